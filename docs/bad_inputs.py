"""Run the bad inputs a user meets and write what metdata answers to docs/bad-inputs.md.

    .venv/bin/python docs/bad_inputs.py            # about a minute; rewrites docs/bad-inputs.md

Everything runs offline: the Met emulator, moto's S3 server (with credentials checked), and a
small dataset built first with the real commands. Each case runs ``python -m metdata ...`` in a
subprocess; the table shows its exit code and the last line it printed on stderr.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"  # moto checks credentials (read when moto loads)

from moto.server import ThreadedMotoServer

from metdata.emulator import EmulatorConfig, MetEmulator
from metdata.storage import lock
from metdata.storage.dataset import Dataset
from metdata.storage.layout import lock_file

OUT = Path(__file__).with_name("bad-inputs.md")


def metdata(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "metdata", *args], capture_output=True, text=True, timeout=600)
    if check and result.returncode:
        raise SystemExit(f"setting up failed: metdata {' '.join(args)}\n{result.stderr[-2000:]}")
    return result


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(nothing)"


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="metdata-bad-inputs-"))
    data = str(work / "data")
    fast = ["--rate", "50", "--cooldown", "1", "--workers", "1"]
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{moto._server.server_port}"
    wrong_keys = f'{{"endpoint_url": "{endpoint}", "key": "AKIAWRONG", "secret": "wrong"}}'
    with (
        MetEmulator(EmulatorConfig(objects=400, seed=0, throttle=False, mix="dense")) as met,
        MetEmulator(EmulatorConfig(objects=50, seed=0, throttle_burst=3, throttle_penalty=600, mix="dense")) as strict,
    ):
        api = met.url
        metdata("ids", "--api", api, "--data", data, check=True)
        for _ in range(4):  # spend the strict emulator's budget: its next answer is the block page
            metdata("ids", "--api", strict.url, "--data", str(work / "spent"), "--cooldown", "0", "--max-attempts", "1")
        metdata("ingest", "--api", api, "--data", data, *fast, check=True)
        target = ["--target", "painting-culture"]
        metdata("images", "--api", api, "--data", data, *target, "--size", "32", *fast, check=True)
        one_class = work / "one-class.toml"
        one_class.write_text(
            'name = "india-only"\nfields = ["culture"]\n[[rules]]\nclass = "India"\ncontains = ["india"]\n'
        )
        corrupt = work / "corrupt"
        subprocess.run(["cp", "-r", data, str(corrupt)], check=True)
        (corrupt / "images.zarr" / "zarr.json").write_text("{ not json")
        metdata("train", "--data", data, *target, "--out", str(work / "run"), "--epochs", "1", check=True)
        metdata(
            "images", "--api", api, "--data", data, *target, "--size", "40", "--store", "s40.zarr", *fast, check=True
        )
        bad_chunk = work / "bad-chunk"
        subprocess.run(["cp", "-r", data, str(bad_chunk)], check=True)
        (bad_chunk / "images.zarr" / "images" / "c" / "0" / "0" / "0" / "0").write_bytes(b"not zstd")
        foreign = work / "foreign"
        subprocess.run(["cp", "-r", data, str(foreign)], check=True)
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"import pyarrow as pa, pyarrow.parquet as pq; "
                f"pq.write_table(pa.table({{'x': [1]}}), {str(foreign / 'objects' / 'zz-other.parquet')!r})",
            ],
            check=True,
        )
        (work / "victim").mkdir()
        (work / "victim" / "keep.txt").write_text("not metdata's")
        sample = Path(__file__).resolve().parents[1] / "tests" / "data" / "MetObjects-sample.csv"
        cut_csv = work / "MetObjects-cut.csv"
        cut_csv.write_bytes(sample.read_bytes()[:-200])  # the download stopped mid-row
        where_file = "objectID = (SELECT column0 FROM read_csv('/etc/passwd', header=false, sep=':') LIMIT 1)"
        cases = [
            ("bad API URL", ["ids", "--api", "collectionapi.metmuseum.org", "--data", data]),
            ("unreachable API", ["ids", "--api", "http://127.0.0.1:9/public/collection/v1", "--data", data]),
            (
                "blocked by the bot protection",
                ["ids", "--api", strict.url, "--data", str(work / "blocked"), "--cooldown", "0", "--max-attempts", "1"],
            ),
            (
                "bad S3 credentials",
                ["ids", "--api", api, "--data", "s3://metdata-bad/data", "--storage-options", wrong_keys],
            ),
            ("unwritable root", ["ids", "--api", api, "--data", "/proc/metdata-data"]),
            (
                "empty selection",
                ["images", "--api", api, "--data", data, "--where", "department = 'No such department'", *fast],
            ),
            ("one-class target", ["train", "--data", data, "--target", str(one_class), "--out", str(work / "r1")]),
            ("wrong image size", ["images", "--api", api, "--data", data, *target, *fast]),
            (
                "corrupt store",
                ["train", "--data", str(corrupt), "--target", "painting-culture", "--out", str(work / "r2")],
            ),
            ("unknown option value", ["images", "--api", api, "--data", data, "--resize", "stretch"]),
            ("store named after a stage folder", ["images", "--api", api, "--data", data, "--store", "objects.zarr"]),
            ("store named '.zarr'", ["images", "--api", api, "--data", data, "--store", ".zarr"]),
            ("store outside the root", ["images", "--api", api, "--data", data, "--store", "../victim.zarr"]),
            ("--where reading a file", ["images", "--api", api, "--data", data, "--where", where_file, *fast]),
            (
                "--where with a second statement",
                ["images", "--api", api, "--data", data, "--where", "1=1; COPY (SELECT 'x') TO 'out.csv'", *fast],
            ),
            (
                "--from-csv a URL that answers JSON",
                ["ingest", "--data", str(work / "c1"), "--from-csv", api + "/departments"],
            ),
            (
                "--from-csv a URL that answers 404",
                ["ingest", "--data", str(work / "c2"), "--from-csv", api + "/nowhere.csv"],
            ),
            ("--from-csv a CSV cut mid-file", ["ingest", "--data", str(work / "c3"), "--from-csv", str(cut_csv)]),
            ("--rate nan", ["ingest", "--api", api, "--data", data, "--rate", "nan"]),
            ("--timeout inf", ["ingest", "--api", api, "--data", data, "--timeout", "inf"]),
            ("--cooldown nan", ["ingest", "--api", api, "--data", data, "--cooldown", "nan"]),
            (
                "--val-fraction nan",
                ["train", "--data", data, *target, "--out", str(work / "r3"), "--val-fraction", "nan"],
            ),
            ("a run folder inside a stage folder", ["train", "--data", data, *target, "--out", f"{data}/objects/run"]),
            ("a second ingest on the same root", ["ingest", "--api", api, "--data", data, *fast]),
            ("another tool's Parquet in objects/", ["images", "--api", api, "--data", str(foreign), *target, *fast]),
            (
                "evaluate on another store",
                ["evaluate", "--data", data, "--store", "s40.zarr", "--model", str(work / "run")],
            ),
            (
                "evaluate on another store, allowed, other size",
                ["evaluate", "--data", data, "--store", "s40.zarr", "--model", str(work / "run"), "--allow-other-data"],
            ),
            ("a damaged Zarr chunk", ["train", "--data", str(bad_chunk), *target, "--out", str(work / "r4")]),
        ]
        rows = []
        for name, args in cases:
            if name == "a second ingest on the same root":  # another live ingest holds it (this process)
                with lock.hold(Dataset(data), lock_file("objects"), "metdata ingest"):
                    result = metdata(*args)
            else:
                result = metdata(*args)
            shown = " ".join(shlex.quote(a) for a in args).replace(str(work), "$WORK").replace(api, "$API")
            shown = shown.replace(strict.url, "$API").replace(endpoint, "$S3")
            message = last_line(result.stderr).replace(str(work), "$WORK").replace(api, "$API")
            message = message.replace(strict.url, "$API").replace(endpoint, "$S3")
            rows.append(f"| {name} | `metdata {shown}` | {result.returncode} | {message.replace('|', '/')} |")
            print(f"{name}: exit {result.returncode}: {message}", flush=True)
        assert (work / "victim" / "keep.txt").exists() and (work / "data" / "objects").is_dir(), "a store name escaped"
        assert not Path("out.csv").exists(), "--where wrote a file"
        assert not any((work / c).exists() and any((work / c).rglob("*")) for c in ("c1", "c2", "c3")), (
            "a bad CSV wrote"
        )
    moto.stop()
    OUT.write_text(
        "# Bad inputs and what metdata says\n\n"
        "Produced by running them: `.venv/bin/python docs/bad_inputs.py` (the emulator, moto's S3\n"
        "server with credentials checked, and a 400-object dataset built first). Exit code 1 is a\n"
        "problem metdata explains, 2 a command line click refuses. $WORK is a temporary folder,\n"
        "$API the emulator and $S3 the moto endpoint. Nothing is written when a command is refused.\n\n"
        "| Bad input | Command | Exit | Last line on stderr |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
