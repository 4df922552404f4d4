"""`curate pipeline --plan`: input and cluster parsing, how the figures scale, the CLI table."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core.errors import ConfigError
from curate.stages.dedup.config import DEFAULT_MEMORY_GB
from curate.workflow import STAGE_NAMES, cc_snapshots
from curate.workflow.plan_cost import plan_data, plan_training
from curate.workflow.plan_inputs import Cluster, parse_cluster, parse_input
from curate.workflow.plan_rates import RATES

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = str(ROOT / "samples" / "pipeline.toml")


def test_parse_input_bytes_warc_files_and_snapshots():
    per_file, per_page = cc_snapshots.WARC_FILE_BYTES, cc_snapshots.BYTES_PER_PAGE
    assert per_file == pytest.approx(1.03e9, rel=0.01) and per_page == pytest.approx(22.6e3, rel=0.01)
    ten_tb = parse_input("10TB")
    assert ten_tb.bytes == 10e12 and ten_tb.warc_files == pytest.approx(10e12 / per_file)
    assert ten_tb.pages == pytest.approx(10e12 / per_page)
    assert parse_input("2 TiB").bytes == 2 * 2**40
    warcs = parse_input("1000warc")
    assert warcs.warc_files == 1000 and warcs.bytes == pytest.approx(1000 * per_file)
    assert warcs.pages == pytest.approx(1000 * per_file / per_page)  # ~45,500 pages per WARC file
    assert parse_input("2k warcs").warc_files == 2000


def test_snapshots_use_common_crawls_published_page_counts():
    snap = parse_input("CC-MAIN-2024-10")
    assert snap.pages == 3_106_525_566 and "3.107 billion pages" in snap.basis
    assert snap.bytes == pytest.approx(snap.pages * cc_snapshots.BYTES_PER_PAGE)
    assert parse_input("cc-main-2023-50").label == "CC-MAIN-2023-50"
    assert parse_input("CC-MAIN-2023-50").pages == 3_354_042_124
    # The one snapshot whose announcement gives its WARC files and compressed size uses them.
    feb19 = parse_input("CC-MAIN-2019-09")
    assert feb19.warc_files == 64_000 and feb19.bytes == pytest.approx(59.86 * 2**40)
    # A snapshot newer than the table: the mean of the newest twelve, said in its basis.
    future = parse_input("CC-MAIN-2031-05")
    newest = [p for p, _ in list(cc_snapshots.PAGES.values())[-12:]]
    assert future.pages == pytest.approx(sum(newest) / 12) and "not in the shipped table" in future.basis


def test_parse_cluster():
    assert parse_cluster("16x32x128GB") == Cluster(16, 32, 128e9)
    c = parse_cluster("2x64x512GiB+8xH100")
    assert (c.nodes, c.cores, c.memory, c.gpus, c.gpu_type) == (2, 64, 512 * 2**30, 8, "h100")
    assert parse_cluster("4x8x64").memory == 64e9  # GB when no unit is given
    assert parse_cluster("1x2x24GB").total_cores == 2


@pytest.mark.parametrize(
    "option, spec",
    [
        ("--input", "10XB"),
        ("--input", "lots"),
        ("--input", "0warc"),
        ("--input", "CC-MAIN-24"),
        ("--input", "-5TB"),
        ("--cluster", "16x32"),
        ("--cluster", "0x32x128GB"),
        ("--cluster", "16x32x128GB+8xZ9000"),
        ("--cluster", "16x32x128QB"),
        ("--cluster", "16 nodes"),
    ],
)
def test_bad_specs_are_one_line_errors(option, spec):
    parse = parse_input if option == "--input" else parse_cluster
    with pytest.raises(ConfigError) as err:
        parse(spec)
    assert "\n" not in str(err.value) and str(err.value).startswith(f"{option} ")
    args = {"--input": "1000warc", "--cluster": "4x8x32GB", option: spec}
    result = CliRunner().invoke(cli, ["pipeline", PIPELINE, "--plan", *[x for kv in args.items() for x in kv]])
    assert result.exit_code != 0
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and option in lines[0], result.output


def test_doubling_input_doubles_time_and_cost_of_data_stages():
    cluster = parse_cluster("16x32x128GB")
    one = {p.stage: p for p in plan_data(parse_input("1000warc"), cluster, price_core_hour=0.05)}
    two = {p.stage: p for p in plan_data(parse_input("2000warc"), cluster, price_core_hour=0.05)}
    assert set(one) == {"crawl", "filter", "dedup", "mix"}
    for stage in one:
        assert two[stage].hours == pytest.approx(2 * one[stage].hours)
        assert two[stage].cost == pytest.approx(2 * one[stage].cost)
        assert two[stage].net_read == pytest.approx(2 * one[stage].net_read)
        assert two[stage].disk_write == pytest.approx(2 * one[stage].disk_write)


def test_doubling_nodes_halves_the_parallel_part_of_every_data_stage_on_ray():
    inp = parse_input("CC-MAIN-2024-10")
    one = {p.stage: p for p in plan_data(inp, parse_cluster("16x32x128GB"), price_core_hour=0.05)}
    two = {p.stage: p for p in plan_data(inp, parse_cluster("32x32x128GB"), price_core_hour=0.05)}
    for stage in ("crawl", "filter"):
        assert two[stage].hours == pytest.approx(one[stage].hours / 2)
        assert two[stage].cost == pytest.approx(one[stage].cost)  # twice the cores for half the time
    for stage in ("crawl", "filter", "dedup", "mix"):
        assert two[stage].workers == 2 * one[stage].workers
    # dedup and mix keep their measured serial part (the driver's share): t = docs (s + p / w).
    r = {k: v.value for k, v in RATES.items()}
    for stage, scale in (("dedup", r["dedup_real_factor"]), ("mix", 1.0)):
        serial = scale * one[stage].docs_in * r[f"{stage}_ray_serial_us"] / 3.6e9
        assert serial > 0
        assert two[stage].hours == pytest.approx(serial + (one[stage].hours - serial) / 2)
        assert "serial_us" in one[stage].rests_on
    # A driver's memory: a measured base plus bytes per document, whatever the cluster; on Ray
    # dedup's per-document part (its URL/exact index partition) stops at the --memory-gb budget.
    for stage in ("dedup", "mix"):
        grows = r[f"{stage}_ray_driver_per_doc"] * one[stage].docs_in
        if stage == "dedup":
            assert grows > DEFAULT_MEMORY_GB * 1024**3  # a whole snapshot: capped
            grows = DEFAULT_MEMORY_GB * 1024**3
        expected = r[f"{stage}_ray_driver_base"] + grows
        assert one[stage].driver_mem == two[stage].driver_mem == pytest.approx(expected)
        assert one[stage].driver_mem < 8e9  # a Ray driver fits any node, whatever the corpus


def test_the_local_engine_uses_one_node_and_says_when_its_driver_overflows():
    inp = parse_input("CC-MAIN-2024-10")
    local16 = {p.stage: p for p in plan_data(inp, parse_cluster("16x32x128GB"), engine="local")}
    local32 = {p.stage: p for p in plan_data(inp, parse_cluster("32x32x128GB"), engine="local")}
    for stage in ("crawl", "filter", "dedup", "mix"):
        assert local16[stage].hours == pytest.approx(local32[stage].hours)  # more nodes: no faster
        assert local16[stage].workers <= 32
    dedup = local16["dedup"]
    per_doc = RATES["dedup_driver_per_doc"].value
    assert dedup.driver_mem == pytest.approx(RATES["dedup_driver_base"].value + per_doc * dedup.docs_in)
    assert dedup.driver_mem > 128e9 and "use --engine ray" in dedup.note
    one_node = {p.stage: p for p in plan_data(parse_input("10warc"), parse_cluster("1x32x128GB"))}
    assert "use --engine ray" not in one_node["dedup"].note  # 1 node: local, and it fits


def test_memory_caps_workers_and_crawl_workers_are_capped_by_files():
    inp = parse_input("CC-MAIN-2024-10")
    small = {p.stage: p for p in plan_data(inp, parse_cluster("1x64x4GB"))}
    assert small["filter"].workers == int(4e9 // RATES["filter_worker_mem"].value) < 64
    assert small["dedup"].workers == int(4e9 // RATES["dedup_worker_mem"].value) < small["filter"].workers
    assert small["filter"].cost is None  # no price given
    few = {p.stage: p for p in plan_data(parse_input("10warc"), parse_cluster("4x32x128GB"))}
    assert few["crawl"].workers == 10
    with pytest.raises(ConfigError, match="a crawl worker needs"):
        plan_data(inp, parse_cluster("1x4x100MB"))


def test_training_reuses_train_estimate():
    from train.estimate import estimate

    cluster = parse_cluster("2x32x256GB+8xH100")
    plan = plan_training(1e9, 20e9, cluster, price_gpu_hour=2.0)
    est = estimate(1e9, 20e9, gpu="h100", mfu=RATES["pretrain_mfu"].value, gpus=8, price=2.0)
    assert plan.hours == pytest.approx(est.wall_hours) and plan.cost == pytest.approx(est.cost)
    assert "train estimate" in plan.rests_on
    assert plan_training(1e9, 20e9, parse_cluster("2x32x256GB")).hours is None


def test_cli_prints_every_stage_and_what_it_rests_on():
    result = CliRunner().invoke(
        cli,
        [
            "pipeline",
            PIPELINE,
            "--plan",
            "--input",
            "CC-MAIN-2024-10",
            "--cluster",
            "16x32x128GB+8xH100",
            "--price-core-hour",
            "0.04",
            "--price-gpu-hour",
            "2.5",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = {ln.split()[0] for ln in result.output.splitlines() if ln and not ln.startswith(" ")}
    for stage in STAGE_NAMES:
        assert stage in rows, stage
    assert "total" in rows and "3.107 billion pages (Common Crawl's statistics)" in result.output
    assert "dedup_ray_driver" in result.output and "mix_ray" in result.output  # 16 nodes: planned on Ray
    for rate in ("bench/crawl.py", "bench/filters.py", "bench/dedup.py", "bench/scale.py", "train estimate"):
        assert rate in result.output


def test_run_options_without_plan_are_refused(tmp_path):
    result = CliRunner().invoke(cli, ["pipeline", PIPELINE, "--input", "10TB", "--workdir", str(tmp_path / "w")])
    assert result.exit_code != 0 and "--input is used only with --plan" in result.output
    assert not (tmp_path / "w").exists()
    result = CliRunner().invoke(cli, ["pipeline", PIPELINE, "--plan", "--input", "10TB"])
    assert result.exit_code != 0 and "--plan needs" in result.output
