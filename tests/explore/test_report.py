"""curate.explore.report and `curate report`: one self-contained HTML page with its plots embedded."""

from __future__ import annotations

import base64
import os
import re
import stat
import struct
from pathlib import Path

from click.testing import CliRunner

from curate.cli import cli
from curate.runtime.stage import StageContext
from curate.stages import mix
from curate.stages.mix import MixConfig, SourceSpec

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
IMG = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def pngs(page: str) -> dict[str, tuple[int, int]]:
    """alt text -> (width, height) of every embedded image, checking each is a whole PNG."""
    out = {}
    for alt, data in IMG.findall(page):
        raw = base64.b64decode(data, validate=True)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[-8:-4] == b"IEND"
        width, height = struct.unpack(">II", raw[16:24])
        assert width > 100 and height > 100
        out[alt] = (width, height)
    return out


def test_report_of_mix_with_funnel(tmp_path, explore_kit):
    docs = explore_kit.known_docs()
    explore_kit.write_stage(tmp_path / "crawl", "crawl", ["/data/a.warc.gz"], 14, 10, {}, {"bad_record": 4}, docs)
    explore_kit.write_stage(
        tmp_path / "filter", "filter", [str(tmp_path / "crawl")], 10, 8, {"gopher_quality": 2}, {}, docs[:8]
    )
    mix.run(
        MixConfig(
            sources=[
                SourceSpec("web", [str(tmp_path / "filter")], 0.7),
                SourceSpec("papers", [str(SAMPLES / "papers")], 0.3),
            ],
            tokens=30_000,
        ),
        StageContext([], str(tmp_path / "mix"), progress=False),
    )
    out = tmp_path / "report.html"
    r = CliRunner().invoke(cli, ["report", str(tmp_path / "mix"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    page = out.read_text()
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "http://" not in page and "https://" not in page.replace("https://x.com", "")  # nothing fetched
    images = pngs(page)
    for alt in (
        "share per source",
        "funnel documents",
        "funnel tokens",
        "drops by reason",
        "document lengths",
        "Quality score",
        "Language score",
        "Top domains",
        "documents per month",
    ):
        assert alt in images, (alt, sorted(images))
    # The funnel table names every stage and the drop reasons.
    for word in ("crawl", "filter", "mix", "gopher_quality=2", "error:bad_record=4", "Training cutoff"):
        assert word in page


def test_report_without_manifests(tmp_path, explore_kit):
    from curate.core.shards import ShardWriter

    with ShardWriter(tmp_path / "shards", prefix="part-00000") as w:
        for d in explore_kit.known_docs():
            w.write(d.replace(n_tokens=None))
    out = tmp_path / "r.html"
    r = CliRunner().invoke(cli, ["report", str(tmp_path / "shards"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    page = out.read_text()
    assert "No manifest.json found" in page and "UTF-8 bytes" in page
    assert "share per source" in pngs(page)
    r = CliRunner().invoke(cli, ["report", str(tmp_path / "nothing"), "-o", str(out)])
    assert r.exit_code == 2 and r.output.startswith("error: ")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_report_file_gets_usual_permissions(tmp_path, explore_kit):
    from curate.core.shards import ShardWriter

    with ShardWriter(tmp_path / "shards", prefix="part-00000") as w:
        for d in explore_kit.known_docs():
            w.write(d)
    out = tmp_path / "r.html"
    r = CliRunner().invoke(cli, ["report", str(tmp_path / "shards"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    # Readable like any file the user creates (not the 0600 of the temp file behind it).
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~_umask()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".r.html")]  # no temp left


def test_report_notes_columns_left_out_and_refuses_bad_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path / "foreign"
    d.mkdir()
    pq.write_table(
        pa.table({"id": ["a", "b"], "text": ["some text", "more text"], "date": ["2024-01-01", "garbage"]}),
        d / "part.parquet",
    )
    out = tmp_path / "r.html"
    r = CliRunner().invoke(cli, ["report", str(d), "-o", str(out)])
    assert r.exit_code == 0, r.output
    page = out.read_text()
    assert "Note: column &#x27;date&#x27; left out" in page and "stores it as string" in page
    assert "documents per month" not in pngs(page)
    (d / "part.parquet").write_bytes(b"not parquet at all")
    r = CliRunner().invoke(cli, ["report", str(d), "-o", str(tmp_path / "r2.html")])
    assert r.exit_code == 1 and r.output.startswith("error: ") and "part.parquet" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "r2.html").exists()
