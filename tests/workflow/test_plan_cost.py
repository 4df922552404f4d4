"""`curate pipeline --plan`: input and cluster parsing, how the figures scale, the CLI table."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core.errors import ConfigError
from curate.workflow import STAGE_NAMES
from curate.workflow.plan_cost import Cluster, parse_cluster, parse_input, plan_data, plan_training
from curate.workflow.plan_rates import CC_PAGES_PER_SNAPSHOT, CC_WARC_FILES_PER_SNAPSHOT, RATES

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = str(ROOT / "samples" / "pipeline.toml")


def test_parse_input_bytes_warc_files_and_snapshots():
    ten_tb = parse_input("10TB")
    assert ten_tb.bytes == 10e12 and ten_tb.warc_files == pytest.approx(10_000)
    assert parse_input("2 TiB").bytes == 2 * 2**40
    assert parse_input("500GB").warc_files == pytest.approx(500)
    warcs = parse_input("1000warc")
    assert warcs.warc_files == 1000 and warcs.bytes == 1000e9
    assert warcs.pages == pytest.approx(1000 * CC_PAGES_PER_SNAPSHOT / CC_WARC_FILES_PER_SNAPSHOT)
    assert parse_input("2k warcs").warc_files == 2000
    snap = parse_input("CC-MAIN-2024-10")
    assert (snap.warc_files, snap.pages, snap.bytes) == (90_000, pytest.approx(3e9), 90e12)
    assert parse_input("cc-main-2023-50").label == "CC-MAIN-2023-50"


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


def test_doubling_nodes_halves_time_of_parallel_stages():
    inp = parse_input("CC-MAIN-2024-10")
    one = {p.stage: p for p in plan_data(inp, parse_cluster("16x32x128GB"), price_core_hour=0.05)}
    two = {p.stage: p for p in plan_data(inp, parse_cluster("32x32x128GB"), price_core_hour=0.05)}
    for stage in ("crawl", "filter", "dedup"):
        assert two[stage].hours == pytest.approx(one[stage].hours / 2)
        assert two[stage].cost == pytest.approx(one[stage].cost)  # twice the cores for half the time
        assert two[stage].workers == 2 * one[stage].workers
    # mix runs on one machine: more nodes do not shorten it.
    assert two["mix"].hours == pytest.approx(one["mix"].hours)


def test_memory_caps_workers_and_crawl_workers_are_capped_by_files():
    inp = parse_input("CC-MAIN-2024-10")
    small = {p.stage: p for p in plan_data(inp, parse_cluster("1x64x1GB"))}
    assert small["filter"].workers == int(1e9 // RATES["filter_worker_mem"].value) < 64
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
    assert "total" in rows and "90,000 WARC files" in result.output
    for rate in ("bench/crawl.py", "bench/filters.py", "bench/dedup.py", "bench/scale.py", "train estimate"):
        assert rate in result.output


def test_run_options_without_plan_are_refused(tmp_path):
    result = CliRunner().invoke(cli, ["pipeline", PIPELINE, "--input", "10TB", "--workdir", str(tmp_path / "w")])
    assert result.exit_code != 0 and "--input is used only with --plan" in result.output
    assert not (tmp_path / "w").exists()
    result = CliRunner().invoke(cli, ["pipeline", PIPELINE, "--plan", "--input", "10TB"])
    assert result.exit_code != 0 and "--plan needs" in result.output
