"""The package as installed: its stubs, docstrings and typing marker."""

import ast
import inspect
import os
import re
from pathlib import Path

import pytest

import kvm
from kvm import _kvm
from support import ROOT

PACKAGE = Path(kvm.__file__).parent


def stub_names():
    """(name, [member names]) of each function and class of _kvm.pyi."""
    tree = ast.parse((PACKAGE / "_kvm.pyi").read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            yield node.name, []
        elif isinstance(node, ast.ClassDef):
            members = [n.name for n in node.body if isinstance(n, ast.FunctionDef)]
            yield node.name, members


def test_installed_with_stubs_and_marker():
    assert (PACKAGE / "py.typed").is_file()
    assert (PACKAGE / "_kvm.pyi").is_file()
    assert _kvm.__file__.endswith((".abi3.so", ".pyd"))


def test_stubs_name_what_the_module_has():
    stubbed = dict(stub_names())
    public = {n for n in dir(_kvm) if not n.startswith("_") and not n.isupper()}
    assert public == set(stubbed)
    for name, members in stubbed.items():
        obj = getattr(_kvm, name)
        for m in members:
            assert hasattr(obj, m), f"{name}.{m}"
        if inspect.isclass(obj):
            runtime = {m for m in vars(obj) if not m.startswith("_")}
            assert runtime <= set(members), f"{name}: not in the stub: {runtime - set(members)}"


def test_everything_public_has_a_docstring():
    assert kvm.__doc__ and _kvm.__doc__
    for name in kvm.__all__:
        obj = getattr(kvm, name)
        if not (inspect.isclass(obj) or callable(obj)):
            continue
        assert inspect.getdoc(obj), name
        if inspect.isclass(obj):
            for m, member in vars(obj).items():
                if not m.startswith("_"):
                    assert inspect.getdoc(member), f"{name}.{m}"


def test_signatures_are_introspectable():
    assert str(inspect.signature(kvm.open)) == "(kernel, core, *, pread=False, verify_kernel=True)"
    assert str(inspect.signature(kvm.Kvm.read)) == "(self, /, addr, size, *, partial=False)"
    space = inspect.signature(kvm.AddressSpace.space)
    assert list(space.parameters)[1:4] == ["paging", "root", "base"]


def test_classes_live_in_kvm():
    for cls in (kvm.Kvm, kvm.Space, kvm.AddressSpace, kvm.Page, kvm.Thread, kvm.KvmError):
        assert cls.__module__ == "kvm"
    assert issubclass(kvm.Kvm, kvm.AddressSpace) and issubclass(kvm.Space, kvm.AddressSpace)
    assert issubclass(kvm.KvmError, OSError)


def test_handles_come_from_open_space_and_pages():
    for cls in (kvm.AddressSpace, kvm.Kvm, kvm.Space, kvm.PageIterator, kvm.Thread):
        with pytest.raises(TypeError):
            cls()
    with pytest.raises(TypeError):

        class Mine(kvm.Kvm):  # noqa: F841 (final)
            pass


def test_the_readme_examples_run(samples, capsys):
    """python/README.md's examples, run in turn from the repository's
    root, as one session."""
    readme = (ROOT / "python" / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert len(blocks) == 2
    cwd = os.getcwd()
    os.chdir(ROOT)
    session: dict = {}
    try:
        for code in blocks:
            exec(compile(code, "python/README.md", "exec"), session)
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert out.startswith("amd64 minidump\nFreeBSD 14.2-RELEASE")
    assert "invalid address (0xffffffff80000000): not mapped" in out
