"""`curate crawl` on ``s3://`` inputs, against a moto S3 server on a loopback port.

Proves the s3 path end to end: prefixes, globs and ``*.paths`` listings resolve to the right
objects, a crawl of the bucket keeps exactly the documents a local crawl of samples/warc keeps,
objects are read in ranged blocks through a file object (not downloaded whole first), and a
missing key / missing bucket / dead endpoint ends as one line, never a traceback.

Needs the ``s3`` extra (s3fs) and ``moto[server]``; skipped cleanly when either is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")  # needs moto[server] (flask, werkzeug)

import s3fs  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from curate.cli import cli  # noqa: E402
from curate.core.errors import InputError  # noqa: E402
from curate.core.shards import read_documents  # noqa: E402
from curate.stages.crawl.sources import open_input, resolve_inputs  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[3] / "samples" / "warc"

# "bucket" in the name: a missing key must not be mistaken for a missing bucket.
BUCKET = "curate-test-bucket"
ARCHIVES = sorted(p for p in SAMPLES.iterdir() if p.name.endswith(".gz"))
# Object name -> local file; one folder level, plus a stray non-archive object to be ignored.
OBJECTS = {f"crawl/warc/{p.name}": p for p in ARCHIVES}


def _isolated_aws_env(mp: pytest.MonkeyPatch, endpoint: str, tmp: Path) -> None:
    """Dummy credentials and our endpoint; nothing read from the real ~/.aws or the shell."""
    for var in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL_S3",
        "AWS_CA_BUNDLE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
    ):
        mp.delenv(var, raising=False)
    mp.setenv("AWS_CONFIG_FILE", str(tmp / "aws-config"))
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp / "aws-credentials"))
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
    mp.setenv("NO_PROXY", "127.0.0.1")
    # The way a user points botocore (hence s3fs) at MinIO/Ceph/a test server.
    mp.setenv("AWS_ENDPOINT_URL", endpoint)
    mp.setenv("CURATE_PROGRESS", "0")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 holding the sample archives and a listing of them."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as mp:
        _isolated_aws_env(mp, f"http://{host}:{port}", tmp_path_factory.mktemp("aws"))
        # s3fs caches filesystem instances (and their botocore clients) across tests: a client
        # made for another endpoint must not be reused.
        s3fs.S3FileSystem.clear_instance_cache()
        fs = s3fs.S3FileSystem()
        fs.mkdir(BUCKET)
        for key, path in OBJECTS.items():
            fs.put_file(str(path), f"{BUCKET}/{key}")
        fs.pipe_file(f"{BUCKET}/crawl/warc/README.txt", b"not an archive\n")
        listing = [
            f"s3://{BUCKET}/crawl/warc/{ARCHIVES[0].name}",
            f"s3://{BUCKET}/crawl/warc/missing-00009.warc.gz",
            f"s3://{BUCKET}/crawl/warc/{ARCHIVES[2].name}",
        ]
        fs.pipe_file(f"{BUCKET}/lists/some.paths", ("# two samples and a typo\n" + "\n".join(listing) + "\n").encode())
        fs.invalidate_cache()
        yield {"fs": fs, "endpoint": f"http://{host}:{port}", "listing": listing}
        s3fs.S3FileSystem.clear_instance_cache()
    server.stop()


@pytest.fixture(scope="module")
def local_crawl(tmp_path_factory):
    """The reference: a crawl of the same sample files from local disk."""
    out = tmp_path_factory.mktemp("local") / "out"
    result = CliRunner().invoke(cli, ["crawl", str(SAMPLES), "-o", str(out), "-j", "2", "-q"])
    assert result.exit_code == 0, result.output
    return out


def _docs_by_id(out: Path) -> dict[str, tuple[str, str, str]]:
    return {d.id: (d.url, d.text, Path(d.warc_path).name) for d in read_documents([str(out)])}


def test_resolve_s3_prefix_glob_bucket_and_listing(s3):
    under = sorted(f"s3://{BUCKET}/{k}" for k in OBJECTS)
    assert resolve_inputs([f"s3://{BUCKET}/crawl/warc/"]) == under  # README.txt skipped
    assert resolve_inputs([f"s3://{BUCKET}/crawl/warc"]) == under  # no suffix: a prefix too
    assert resolve_inputs([f"s3://{BUCKET}"]) == under  # the whole bucket (the listing is no archive)
    assert resolve_inputs([f"s3://{BUCKET}/crawl/warc/*.warc.gz"]) == [u for u in under if ".wet." not in u]
    # One object named outright is taken as is, without a request.
    one = f"s3://{BUCKET}/crawl/warc/{ARCHIVES[1].name}"
    assert resolve_inputs([one]) == [one]
    assert resolve_inputs([f"s3://{BUCKET}/lists/some.paths"]) == s3["listing"]
    with pytest.raises(InputError, match="no .warc/.arc/.wet objects"):
        resolve_inputs([f"s3://{BUCKET}/nothing/here/"])
    with pytest.raises(InputError, match="no such bucket"):
        resolve_inputs(["s3://no-such-bucket-here/"])


def test_s3_object_is_streamed_in_ranges(s3, monkeypatch):
    """The reader gets a file object that fetches blocks as it reads, not the whole object."""
    import fsspec.config

    block = 64 * 1024
    # fsspec's config is how a user tunes s3fs (FSSPEC_S3_DEFAULT_BLOCK_SIZE, conf.json).
    monkeypatch.setitem(fsspec.config.conf, "s3", {"default_block_size": block})
    s3fs.S3FileSystem.clear_instance_cache()
    fetched: list[tuple[int, int]] = []
    real_fetch = s3fs.core.S3File._fetch_range

    def recording_fetch(self, start, end):
        fetched.append((start, end))
        return real_fetch(self, start, end)

    monkeypatch.setattr(s3fs.core.S3File, "_fetch_range", recording_fetch)
    local = ARCHIVES[0]
    size = local.stat().st_size
    assert size > 3 * block
    with open_input(f"s3://{BUCKET}/crawl/warc/{local.name}") as stream:
        assert hasattr(stream, "read") and not isinstance(stream, (bytes, bytearray))
        head = stream.read(1000)
        assert head == local.read_bytes()[:1000]
        assert 0 < sum(e - s for s, e in fetched) <= 2 * block < size  # only the first block(s)
        rest = b"".join(iter(lambda: stream.read(10_000), b""))
    assert head + rest == local.read_bytes()
    # Read front to back in several ranged requests, each byte fetched once.
    assert len(fetched) >= 3 and sum(e - s for s, e in fetched) == size
    s3fs.S3FileSystem.clear_instance_cache()


def test_crawl_s3_prefix_equals_local_crawl(s3, local_crawl, tmp_path):
    runner = CliRunner()
    out = tmp_path / "s3out"
    args = ["crawl", f"s3://{BUCKET}/crawl/warc/", "-o", str(out), "-j", "2", "-q"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    local_manifest = json.loads((local_crawl / "manifest.json").read_text())
    assert [i["path"] for i in manifest["inputs"]] == sorted(f"s3://{BUCKET}/{k}" for k in OBJECTS)
    assert all(i["status"] == "done" for i in manifest["inputs"])
    counts = manifest["counts"]
    assert counts["read"] == counts["kept"] + sum(counts["rejected"].values()) + sum(counts["errors"].values())
    for key in ("read", "kept", "rejected", "errors"):
        assert counts[key] == local_manifest["counts"][key], key
    s3_docs, local_docs = _docs_by_id(out), _docs_by_id(local_crawl)
    assert len(s3_docs) == counts["kept"] > 250
    assert s3_docs == local_docs  # same ids, urls, texts, from files of the same names
    assert all(d.warc_path.startswith(f"s3://{BUCKET}/") for d in read_documents([str(out)]))
    # A rerun resumes: every input already done, nothing added.
    again = runner.invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert json.loads((out / "manifest.json").read_text())["counts"] == counts


def test_missing_key_in_listing_is_a_failed_input(s3, local_crawl, tmp_path):
    out = tmp_path / "listed"
    result = CliRunner().invoke(cli, ["crawl", f"s3://{BUCKET}/lists/some.paths", "-o", str(out), "-j", "1", "-q"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    missing = s3["listing"][1]
    problem = [line for line in result.output.splitlines() if "unreadable input" in line]
    assert problem == [f"  unreadable input: {missing}: no such object"]
    assert result.output.strip().splitlines()[-1].startswith("error: 1 input(s) could not be read")
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(i["path"], i["status"]) for i in manifest["inputs"]] == [
        (s3["listing"][0], "done"),
        (missing, "failed"),
        (s3["listing"][2], "done"),
    ]
    # The two readable files give exactly their documents from the local crawl.
    wanted = {ARCHIVES[0].name, ARCHIVES[2].name}
    expected = {i: d for i, d in _docs_by_id(local_crawl).items() if d[2] in wanted}
    assert _docs_by_id(out) == expected and len(expected) == manifest["counts"]["kept"] > 100


def test_missing_bucket_and_dead_endpoint_are_one_line_errors(s3, tmp_path, monkeypatch, warc_kit):
    runner = CliRunner()

    def one_line_error(args: list[str], exit_code: int) -> str:
        result = runner.invoke(cli, args)
        assert result.exit_code == exit_code, result.output
        assert "Traceback" not in result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.output
        return lines[0]

    line = one_line_error(["crawl", "s3://no-such-bucket-here/", "-o", str(tmp_path / "a"), "-q"], 2)
    assert line == "error: s3://no-such-bucket-here/: no such bucket"
    # Nothing listens on the endpoint: no retry storm (one attempt), one line.
    monkeypatch.setenv("AWS_ENDPOINT_URL", warc_kit.free_port_unreachable().rsplit("/", 1)[0])
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        line = one_line_error(["crawl", f"s3://{BUCKET}/crawl/", "-o", str(tmp_path / "b"), "-q"], 2)
        assert line.startswith(f"error: s3://{BUCKET}/crawl/: cannot list (") and "connect" in line.lower()
        # A single object on a dead endpoint: that input failed, exit 1, its reason on one line.
        key = f"s3://{BUCKET}/crawl/warc/{ARCHIVES[0].name}"
        result = runner.invoke(cli, ["crawl", key, "-o", str(tmp_path / "c"), "-j", "1", "-q"])
        assert result.exit_code == 1 and "Traceback" not in result.output
        problem = [line for line in result.output.splitlines() if "unreadable input" in line]
        assert len(problem) == 1 and f"{key}: cannot open (" in problem[0] and "connect" in problem[0].lower()
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
