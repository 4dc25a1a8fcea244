"""run_tool, the tools' error contract: bad input is one line naming the tool and exit 2,
Ctrl-C exit 130, a bug its traceback. Run in subprocesses, as a user runs a tool."""

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT


def run_tool_with(body: str, name: str = "mytool", env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """A script whose main() runs `body`, started through run_tool."""
    script = textwrap.dedent("""
        import sys
        from maskgit.project.errors import InputError, ParamError, UserError
        from maskgit.project.tool import run_tool

        def main():
        {body}

        run_tool(main, {name!r})
        print("after run_tool")
    """).format(body=textwrap.indent(textwrap.dedent(body), "    "), name=name)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MASKGIT_DEBUG", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("error", ["UserError", "ParamError", "InputError"])
def test_bad_input_is_one_line_naming_the_tool_and_exit_2(error):
    result = run_tool_with(f"raise {error}('params.yaml: inpaint.total_iter must be > 0')")
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == ["error: mytool: params.yaml: inpaint.total_iter must be > 0"]
    assert "after run_tool" not in result.stdout


def test_a_message_with_several_lines_still_prints_one():
    result = run_tool_with("raise UserError('dvc exp show failed:\\n  first\\n\\n  second')")
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: mytool: dvc exp show failed:; first; second"]


@pytest.mark.parametrize("bug", ["ValueError('a bug')", "KeyError('val_loss')", "RuntimeError('a bug')"])
def test_a_bug_keeps_its_traceback(bug):
    result = run_tool_with(f"raise {bug}")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and bug.split("(")[0] in result.stderr
    assert "error: mytool" not in result.stderr


def test_debug_shows_the_traceback_of_bad_input_too():
    result = run_tool_with("raise ParamError('x')", env_extra={"MASKGIT_DEBUG": "1"})
    assert result.returncode == 1 and "Traceback" in result.stderr and "ParamError: x" in result.stderr


def test_ctrl_c_and_sigterm_exit_130_with_one_line():
    result = run_tool_with("raise KeyboardInterrupt")
    assert result.returncode == 130 and result.stderr.splitlines() == ["mytool: interrupted"]
    # SIGTERM unwinds: the `finally` runs
    result = run_tool_with("""
        import os, signal
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        finally:
            print("cleaned up")
    """)
    assert result.returncode == 130 and "cleaned up" in result.stdout
    assert result.stderr.splitlines() == ["mytool: interrupted"]


def test_a_normal_return_and_an_explicit_exit_status_pass_through():
    result = run_tool_with("return 5")
    assert result.returncode == 0 and "after run_tool" in result.stdout and result.stderr == ""
    result = run_tool_with("sys.exit(1)")
    assert result.returncode == 1 and result.stderr == ""


def test_in_process_the_sigterm_handler_is_put_back(capsys):
    import signal

    from maskgit.project.errors import UserError
    from maskgit.project.tool import run_tool

    before = signal.getsignal(signal.SIGTERM)

    def main():
        raise UserError("bad")

    with pytest.raises(SystemExit) as stop:
        run_tool(main, "t")
    assert stop.value.code == 2 and capsys.readouterr().err == "error: t: bad\n"
    assert signal.getsignal(signal.SIGTERM) is before


def test_run_tool_is_light():
    # sweep and verify start fast: the contract must not pull in torch or numpy
    code = "import sys, maskgit.project.tool; print(sorted({'torch', 'numpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("tool", ["maskgit.sweep", "maskgit.tune", "maskgit.experiments", "maskgit.verify"])
def test_the_tools_read_yaml_only_as_dvc_does(tool):
    # one YAML reader, maskgit.project.params.parse_yaml (ruamel, YAML 1.2 as DVC reads
    # it): PyYAML reads `1e-3` as a string, so a tool on PyYAML would disagree with DVC
    # about a value the user set. Checked over every maskgit module the tool runs.
    import ast

    from test_layers import graph

    g, seen, todo = graph(), set(), [tool]
    while todo:
        module = todo.pop()
        if module not in seen and module in g:
            seen.add(module)
            todo += g[module]
    assert "maskgit.project.params" in seen  # the closure is followed
    pyyaml = []
    for module in sorted(seen):
        path = ROOT / (module.replace(".", "/") + ".py")
        path = path if path.is_file() else ROOT / module.replace(".", "/") / "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            pyyaml += [module for n in names if n == "yaml" or n.startswith("yaml.")]
    assert not pyyaml, f"{tool} runs PyYAML through {pyyaml}: use maskgit.project.params.parse_yaml"
