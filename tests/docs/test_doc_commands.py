"""Every command the docs show runs.

Each shell command in a ```bash / ```sh / ```console block of README.md or docs/**/*.md
is one of:
- run, in the doc's own temporary folder, in the order the doc gives (a doc's later
  commands use what its earlier ones wrote), and must exit 0. A command that takes
  minutes runs as the quick variant QUICK names, which may differ from it only in
  SIZE_FLAGS;
- marked ``# needs a GPU`` (exactly that trailing comment): its flags are still parsed
  by the click command, so a renamed flag fails here too;
- a setup command (SETUP: make, pip, git) or the regeneration of docs/cli.md, skipped
  with the reason given.
Each ```python block runs too, in the same folder, after the shell blocks before it.
An ``edgediff`` command runs in this process (through click's CliRunner) unless it
starts other processes (``--ray``); everything else runs in a shell. A command that
needs an extra this environment lacks skips the rest of its doc, naming the extra.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_BLOCKS = ("bash", "sh", "console")
GPU_MARK = "needs a GPU"
SETUP = {
    "make": "make targets install .venv and run the demo or the whole suite (CI runs make test)",
    "pip": "installs packages",
    "git": "fetches the repository",
}
REGENERATE = {
    "python -m edgediff.cli.manual > docs/cli.md":
        "rewrites docs/cli.md; tests/docs/test_cli_md.py checks that file against the same render",
}
# flags that set how much work a command does, not what it does
SIZE_FLAGS = {"--num", "--steps", "--nfe", "--batch", "--calibration", "--reference-steps",
              "--workers", "--shard-size", "--reps"}
# the doc's command -> the command this test runs instead (same work, smaller)
QUICK = {
    "edgediff sample digits.onnx --num 64 -o out/sample":
        "edgediff sample digits.onnx --num 8 -o out/sample",
    "edgediff sample digits.onnx --preset ipndm-10 -o out/fast":
        "edgediff sample digits.onnx --preset ipndm-10 -o out/fast --num 8",
    "edgediff sample digits.onnx --preset edm-stochastic --seed 3":
        "edgediff sample digits.onnx --preset edm-stochastic --seed 3 --num 2 --steps 4",
    "edgediff sample digits.onnx --solver ipndm --steps 10 --order 3":
        "edgediff sample digits.onnx --solver ipndm --steps 10 --order 3 --num 8",
    "edgediff sample digits.onnx --solver unipc --steps 10 --grid lambda":
        "edgediff sample digits.onnx --solver unipc --steps 10 --grid lambda --num 8",
    "edgediff sample digits-cond.onnx --class all --num 10 --guidance 3":
        "edgediff sample digits-cond.onnx --class all --num 1 --guidance 3",
    "edgediff sample digits-cond.onnx --class 7 --guidance 2 --guide weaker.onnx":
        "edgediff sample digits-cond.onnx --class 7 --guidance 2 --guide weaker.onnx --num 4",
    "edgediff bench digits.onnx --suite quick":
        "edgediff bench digits.onnx --suite quick --num 4 --reference-steps 4",
    "edgediff bench digits.onnx --suite fewstep":
        "edgediff bench digits.onnx --suite fewstep --num 8 --reference-steps 4",
    "edgediff bench mixture.onnx --solvers heun,dpmpp_2m --nfe 5,9,19 --num 4000":
        "edgediff bench mixture.onnx --solvers heun,dpmpp_2m --nfe 5,9,19 --num 64 "
        "--reference-steps 4",
    "edgediff bench digits-cond.onnx --solvers heun --nfe 35 --guidance 0,1,2,3,4":
        "edgediff bench digits-cond.onnx --solvers heun --nfe 5 --guidance 0,1,2,3,4 --num 8 "
        "--reference-steps 4",
    "edgediff export bundled -o digits-int8.onnx --int8":
        "edgediff export bundled -o digits-int8.onnx --int8 --calibration 4",
    "edgediff generate digits.onnx --num 10000 -o out/gen":
        "edgediff generate digits.onnx --num 16 -o out/gen",
    "edgediff generate digits.onnx --num 10000 -o out/gen --resume":
        "edgediff generate digits.onnx --num 16 -o out/gen --resume",
    "edgediff generate digits.onnx --num 10000 -o out/gen-ray --ray --workers 2":
        "edgediff generate digits.onnx --num 4 -o out/gen-ray --ray --workers 2",
    "edgediff sample digits-cd.onnx --preset cd-digits-2 --num 64 -o out/cd":
        "edgediff sample digits-cd.onnx --preset cd-digits-2 --num 8 -o out/cd",
    "edgediff bench digits-cd.onnx --suite distilled --teacher digits.onnx --num 360":
        "edgediff bench digits-cd.onnx --suite distilled --teacher digits.onnx --num 8",
    "edgediff train digits -o my-digits --steps 8000 --seed 0":
        "edgediff train digits -o my-digits --steps 2 --seed 0",
    "edgediff train mixture2d -o mix-vp --parameterization vp":
        "edgediff train mixture2d -o mix-vp --parameterization vp --steps 2",
    "edgediff train digits -o weaker --class-conditional --channels 8 --steps 500 --seed 1":
        "edgediff train digits -o weaker --class-conditional --channels 8 --steps 2 --seed 1",
    "edgediff train digits -o digits-edm --parameterization edm --channels 32 --steps 8000 "
    "--batch 128 --lr 0.001 --ema-halflife 500.0 --seed 0":
        "edgediff train digits -o digits-edm --parameterization edm --channels 32 --steps 2 "
        "--batch 8 --lr 0.001 --ema-halflife 500.0 --seed 0",
    "edgediff train digits --distill consistency --teacher bundled -o digits-cd --steps 5000 "
    "--batch 64 --lr 0.0002 --discretisation 18 --target-decay 0.95 --ema-halflife 500.0 "
    "--seed 0":
        "edgediff train digits --distill consistency --teacher bundled -o digits-cd --steps 2 "
        "--batch 8 --lr 0.0002 --discretisation 18 --target-decay 0.95 --ema-halflife 500.0 "
        "--seed 0",
    "edgediff train digits -o digits-edm-cond --parameterization edm --channels 32 --steps 8000 "
    "--batch 128 --lr 0.001 --ema-halflife 500.0 --seed 0 --class-conditional "
    "--label-dropout 0.2":
        "edgediff train digits -o digits-edm-cond --parameterization edm --channels 32 --steps 2 "
        "--batch 8 --lr 0.001 --ema-halflife 500.0 --seed 0 --class-conditional "
        "--label-dropout 0.2",
}
MISSING_EXTRA = re.compile(r"it comes with the '([\w-]+)' extra")
_EXPORTED: dict[str, Path] = {}  # export command -> its output, reused by later docs


@dataclass(frozen=True)
class Command:
    doc: str
    line: int
    text: str  # without its trailing comment
    comment: str


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    body: str


def blocks(doc: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, with their language and first line."""
    found, lines, i = [], doc.read_text(encoding="utf-8").splitlines(), 0
    while i < len(lines):
        m = re.match(r"^\s*```(\w*)\s*$", lines[i])
        if m:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            found.append(Block(doc.relative_to(ROOT).as_posix(), i + 2, m[1],
                               "\n".join(lines[i + 1:end])))
            i = end
        i += 1
    return found


def split_comment(line: str) -> tuple[str, str]:
    """(command, comment): the comment starts at the first # outside quotes that
    follows whitespace."""
    quote = None
    for k, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or line[k - 1].isspace()):
            return line[:k].strip(), line[k + 1:].strip()
    return line.strip(), ""


def commands(block: Block) -> list[Command]:
    """The block's commands: continuation lines joined, console prompts dropped."""
    found, pending, start = [], "", 0
    for k, raw in enumerate(block.body.splitlines()):
        line = raw.strip()
        if block.lang == "console":
            if not line.startswith("$ ") and not pending:
                continue  # output
            line = line.removeprefix("$ ")
        if not pending:
            start = block.line + k
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        text, comment = split_comment(pending + line)
        pending = ""
        if text:
            found.append(Command(block.doc, start, " ".join(text.split()), comment))
    return found


def all_commands() -> list[Command]:
    return [c for doc in DOCS for b in blocks(doc) if b.lang in SHELL_BLOCKS
            for c in commands(b)]


def skip_reason(cmd: Command) -> str | None:
    if cmd.text in REGENERATE:
        return REGENERATE[cmd.text]
    return SETUP.get(shlex.split(cmd.text)[0])


def without_size_flags(text: str) -> list[str]:
    words, kept, k = shlex.split(text), [], 0
    while k < len(words):
        flag = words[k].split("=")[0]
        if flag in SIZE_FLAGS:
            k += 1 if "=" in words[k] else 2
            continue
        if words[k] != "--quick":
            kept.append(words[k])
        k += 1
    return kept


def test_quick_variants_differ_only_in_size():
    for doc_text, quick in QUICK.items():
        assert without_size_flags(doc_text) == without_size_flags(quick), quick
        assert doc_text != quick


def test_every_quick_variant_is_a_doc_command():
    shown = {c.text for c in all_commands()}
    assert not set(QUICK) - shown, "QUICK names commands no doc shows any more"


def test_commands_are_classified():
    """A trailing comment that merely resembles the GPU mark does not skip a command."""
    cmd = commands(Block("x.md", 1, "bash", "edgediff build a.onnx -o a.plan  # needs GPU"))[0]
    assert cmd.comment != GPU_MARK and skip_reason(cmd) is None
    cont = commands(Block("x.md", 1, "bash", "edgediff train digits \\\n    --seed 0  # hi"))
    assert [(c.text, c.comment) for c in cont] == [("edgediff train digits --seed 0", "hi")]


def _edgediff(args: list[str]) -> tuple[int, str]:
    from click.testing import CliRunner

    from edgediff.cli import main

    result = CliRunner().invoke(main, args, catch_exceptions=True)
    output = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        output += "".join(traceback.format_exception(*result.exc_info))
    return result.exit_code, output


def _shell(text: str, cwd: Path) -> tuple[int, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(text, shell=True, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    return done.returncode, done.stdout + done.stderr


def parse_only(text: str) -> None:
    """Check a command the test cannot run here: click parses its flags."""
    from edgediff.cli import main

    args = shlex.split(text)[1:]
    root = main.make_context("edgediff", list(args), resilient_parsing=True)
    sub = main.get_command(root, args[0])
    assert sub is not None, f"no command {args[0]!r}"
    sub.make_context(args[0], args[1:], parent=root)


def run(cmd: Command, cwd: Path) -> None:
    text = QUICK.get(cmd.text, cmd.text)
    words = shlex.split(text)
    cached = _EXPORTED.get(text)
    if cached is not None and cached.is_file():  # the same export, made for an earlier doc
        shutil.copy(cached, cwd / words[words.index("-o") + 1])
        return
    if words[0] == "edgediff" and not any(w.startswith("--ray") for w in words):
        code, output = _edgediff(words[1:])
    else:
        code, output = _shell(text.replace("edgediff ", f"{sys.executable} -c "
                                           "'from edgediff.cli import main; main()' ", 1)
                              if words[0] == "edgediff" else text, cwd)
    missing = MISSING_EXTRA.search(output)
    if code != 0 and missing:
        pytest.skip(f"{cmd.doc}:{cmd.line}: {cmd.text} needs the '{missing[1]}' extra")
    assert code == 0, f"{cmd.doc}:{cmd.line}: `{text}` exited {code}:\n{output[-3000:]}"
    if words[:2] == ["edgediff", "export"]:
        _EXPORTED[text] = cwd / words[words.index("-o") + 1]


def run_python(block: Block, namespace: dict) -> None:
    try:
        exec(compile(block.body, f"{block.doc}:{block.line}", "exec"), namespace)
    except ModuleNotFoundError as e:
        from edgediff.errors import EXTRAS

        if e.name and e.name.split(".")[0] in EXTRAS:
            pytest.skip(f"{block.doc}:{block.line} needs {e.name} "
                        f"(the '{EXTRAS[e.name.split('.')[0]][1]}' extra)")
        raise


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.relative_to(ROOT).as_posix())
def test_doc_commands_run(doc, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    ran = set()
    for block in blocks(doc):
        if block.lang == "python":
            run_python(block, namespace)
            continue
        if block.lang not in SHELL_BLOCKS:
            continue
        for cmd in commands(block):
            if skip_reason(cmd) or cmd.text in ran:
                continue
            if cmd.comment == GPU_MARK:
                if cmd.text.startswith("edgediff "):
                    parse_only(cmd.text)
                continue
            run(cmd, tmp_path)
            ran.add(cmd.text)
