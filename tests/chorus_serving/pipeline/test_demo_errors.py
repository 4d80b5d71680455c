"""Issue 12 failure 8: every bad demo option is a one-line error naming the option, the expected
and the actual value, with exit status 2 and no traceback; checked before any model is built."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from npu_ops.chorus import demo

REPO = Path(__file__).resolve().parents[3]


def _bad_cases(tmp: Path, *, write: bool = True):
    empty, badline, latin1 = tmp / "empty.txt", tmp / "badline.txt", tmp / "latin1.txt"
    if write:
        empty.write_text("# only a comment\n\n", encoding="utf-8")
        badline.write_text("a cat\nacme\t\n", encoding="utf-8")
        latin1.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    missing = tmp / "missing.txt"
    return [
        # argv, option named, fragment of the actual value
        (["--latent", "16,5,32"], "--latent", "'16,5,32'"),
        (["--latent", "a,b,c,d"], "--latent", "'a,b,c,d'"),
        (["--latent", "16,5,0,32"], "--latent", "'16,5,0,32'"),
        (["--latent", "15,5,32,32"], "--latent", "15"),  # C must be the model's 16 channels
        (["--latent", "16,5,33,32"], "--latent", "33"),  # H, W must be divisible by the patch (2)
        (["--latent", ""], "--latent", "''"),
        (["--steps", "0"], "--steps", "0"),
        (["--steps", "x"], "--steps", "'x'"),
        (["--steps", "1"], "--steps", "1"),  # too few for the default stages
        (["--tau-full", "1.5"], "--tau-full", "1.5"),
        (["--tau-full", "nan"], "--tau-full", "nan"),
        (["--tau-partial", "x"], "--tau-partial", "'x'"),
        (["--tau-partial", "0.99"], "--tau-partial", "0.99"),  # above the default tau_full 0.95
        (["--tau-full", "0.5"], "--tau-full", "0.5"),  # below the default tau_partial 0.8
        (["--warmup", "-1"], "--warmup", "-1"),
        (["--warmup", "7", "--quick"], "--warmup", "7"),  # the quick trace has 6 requests
        (["--threads", "-1"], "--threads", "-1"),
        (["--threads", "1.5"], "--threads", "'1.5'"),
        (["--encoder", "nope"], "--encoder", "'nope'"),
        (["--prompts", str(missing)], "--prompts", str(missing)),
        (["--prompts", str(tmp)], "--prompts", str(tmp)),
        (["--prompts", str(empty)], "--prompts", str(empty)),
        (["--prompts", str(badline)], "--prompts", "acme"),
        (["--prompts", str(latin1)], "--prompts", str(latin1)),
        (["--plot", str(tmp / "no" / "such" / "dir" / "s.png")], "--plot", "no"),
        (["--plot", str(tmp)], "--plot", str(tmp)),
        (["--plot", str(tmp / "s.notaformat")], "--plot", "notaformat"),
        (["--bogus"], "--bogus", "--bogus"),
        (["--steps"], "--steps", "--steps"),  # a missing value
    ]


def _ids():
    return [" ".join(a) for a, _, _ in _bad_cases(Path("TMP"), write=False)]


@pytest.mark.parametrize("case", range(len(_ids())), ids=_ids())
def test_bad_option_is_one_line(case, tmp_path, capsys):
    argv, option, actual = _bad_cases(tmp_path)[case]
    with pytest.raises(SystemExit) as ei:
        demo.main([*argv, "--no-progress"])
    assert ei.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("python -m npu_ops.chorus.demo: error: "), err
    assert option in lines[0] and actual in lines[0], err
    if argv not in (["--bogus"], ["--steps"]):  # argparse's own messages name the option but have no value
        assert " must " in lines[0] and ", got " in lines[0], err  # expected, then actual


def test_several_bad_options_are_all_named(capsys):
    with pytest.raises(SystemExit) as ei:
        demo.main(["--steps", "0", "--threads", "-2", "--tau-full", "3"])
    assert ei.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert all(o in err for o in ("--steps", "--threads", "--tau-full")), err


def test_help_still_exits_0(capsys):
    with pytest.raises(SystemExit) as ei:
        demo.main(["--help"])
    assert ei.value.code == 0 and "--latent" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--latent", "1,2,3"], ["--prompts", "/nonexistent/prompts.txt"]])
def test_cli_process_prints_no_traceback(argv):
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'python'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    run = subprocess.run(
        [sys.executable, "-m", "npu_ops.chorus.demo", *argv], capture_output=True, text=True, env=env, timeout=120
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert argv[0] in run.stderr and run.stdout == ""


def test_encoder_that_cannot_load_is_one_line(monkeypatch, capsys):
    """An encoder whose model is missing on this machine is a bad --encoder, not a traceback."""
    from npu_ops.chorus import encoder as enc

    def broken(**_):
        raise OSError("model files not found\nsecond line of detail")

    monkeypatch.setitem(enc._REGISTRY, "broken", broken)
    with pytest.raises(SystemExit) as ei:
        demo.main(["--encoder", "broken", "--quick"])
    assert ei.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--encoder 'broken'" in err and "model files not found" in err, err
