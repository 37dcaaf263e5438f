"""``editgan package-krita`` and ``scripts/install_krita_plugin.py``.

Offline: minimal but valid wheels served with ``--find-links`` go through the real ``pip download``
path. Online (skipped without PyPI): the real pyzmq/msgpack wheels for this machine, imported by
an isolated interpreter (``python -S``: no site-packages) from the unpacked zip.
"""

import argparse
import importlib.util
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from editgan import package_krita
from tests import fake_krita

sys.path.insert(0, str(fake_krita.PLUGIN_DIR))
from editgan_krita import deps  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KRITA_IMPORTER = Path("/usr/share/krita/pykrita/plugin_importer/plugin_importer.py")
PLATFORM = "manylinux_2_28_x86_64"


def fake_wheel(folder: Path, dist: str, module: str, python_tag: str = "cp311", platform: str = PLATFORM):
    name = f"{dist}-99.0.0-{python_tag}-{python_tag}-{platform}.whl"
    info = f"{dist}-99.0.0.dist-info"
    with zipfile.ZipFile(folder / name, "w") as zf:
        zf.writestr(f"{module}/__init__.py", f"FAKE = {dist!r}\n")
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: 99.0.0\n")
        zf.writestr(f"{info}/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {python_tag}-{python_tag}-{platform}\n")
        zf.writestr(f"{info}/RECORD", "")
    return folder / name


def cli(*argv):
    parser = argparse.ArgumentParser()
    package_krita.register(parser.add_subparsers())
    args = parser.parse_args(["package-krita", *argv])
    return args.func(args)


def import_with_krita_importer(zip_path: Path, resources: Path):
    """Krita's own *Import Python Plugin from File* code, run outside Krita."""
    spec = importlib.util.spec_from_file_location("krita_plugin_importer", KRITA_IMPORTER)
    module = importlib.util.module_from_spec(spec)
    import builtins
    builtins.i18n = getattr(builtins, "i18n", str)
    spec.loader.exec_module(module)
    return module.PluginImporter(str(zip_path), str(resources), lambda plugin: True).import_all()


def test_offline_zip_layout_and_vendor_selection(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    fake_wheel(wheels, "pyzmq", "zmq")
    fake_wheel(wheels, "msgpack", "msgpack")
    assert cli("--platform", PLATFORM, "--python", "3.11", "--out", str(tmp_path / "dist"),
               "--find-links", str(wheels)) == 0
    [zip_path] = (tmp_path / "dist").glob("*.zip")
    assert zip_path.name == f"editgan_krita-0.1.0-cp311-{PLATFORM}.zip"
    names = zipfile.ZipFile(zip_path).namelist()
    assert "editgan_krita.desktop" in names and "editgan_krita/" in names      # what Krita's importer needs
    assert "editgan_krita/__init__.py" in names and "editgan_krita/README.md" in names
    assert f"editgan_krita/vendor/cp311-{PLATFORM}/zmq/__init__.py" in names
    assert f"editgan_krita/vendor/cp311-{PLATFORM}/msgpack/__init__.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    zipfile.ZipFile(zip_path).extractall(tmp_path / "x")
    vendor = tmp_path / "x" / "editgan_krita" / "vendor"
    assert deps.vendor_dir(vendor, version=(3, 11), system="linux", machine="x86_64").name == f"cp311-{PLATFORM}"
    assert deps.vendor_dir(vendor, version=(3, 10), system="linux", machine="x86_64") is None


def test_missing_wheels_are_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli("--platform", "win_amd64", "--python", "3.10", "--out", str(tmp_path),
               "--find-links", str(tmp_path / "empty")) == 1
    assert "Python 3.10 on win_amd64" in capsys.readouterr().err
    with pytest.raises(package_krita.PackagingError):
        package_krita.python_tag("three")


@pytest.mark.skipif(not KRITA_IMPORTER.is_file(), reason="Krita's plugin_importer.py is not installed")
def test_krita_importer_accepts_the_zip(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    fake_wheel(wheels, "pyzmq", "zmq")
    fake_wheel(wheels, "msgpack", "msgpack")
    zip_path = package_krita.build([PLATFORM], ["3.11"], tmp_path / "dist", str(wheels))
    (tmp_path / "res").mkdir()
    imported = import_with_krita_importer(zip_path, tmp_path / "res")
    assert [p["name"] for p in imported] == ["editgan_krita"]
    assert (tmp_path / "res" / "pykrita" / "editgan_krita" / "vendor").is_dir()


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="checks the local manylinux x86_64 wheels")
def test_real_wheels_import_in_an_isolated_python(tmp_path):
    if not pypi_reachable():
        pytest.skip("PyPI is not reachable")
    tag = f"{sys.version_info[0]}.{sys.version_info[1]}"
    zip_path = package_krita.build([PLATFORM], [tag], tmp_path / "dist")
    zipfile.ZipFile(zip_path).extractall(tmp_path / "pykrita")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import editgan_krita.deps as d; "
            "assert d.problem is None, d.problem; import zmq, msgpack; "
            "assert 'vendor' in zmq.__file__ and 'vendor' in msgpack.__file__, zmq.__file__; "
            "print(zmq.zmq_version(), msgpack.unpackb(msgpack.packb({'a': 1})))")
    done = subprocess.run([sys.executable, "-S", "-c", code, str(tmp_path / "pykrita")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "{'a': 1}" in done.stdout


def test_install_script_copies_the_plugin_and_enables_it(tmp_path):
    home = tmp_path / "home"
    kritarc = home / ".config" / "kritarc"
    kritarc.parent.mkdir(parents=True)
    kritarc.write_text("[General]\nfoo=bar\n\n[python]\nenable_other=true\n")
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / "data"),
           "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "install_krita_plugin.py")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    pykrita = home / "data" / "krita" / "pykrita"
    assert (pykrita / "editgan_krita.desktop").is_file() and (pykrita / "editgan_krita" / "__init__.py").is_file()
    assert not list(pykrita.rglob("__pycache__"))
    text = kritarc.read_text()
    assert "foo=bar" in text and "enable_other=true" in text and "enable_editgan_krita=true" in text
    again = subprocess.run([sys.executable, str(REPO / "scripts" / "install_krita_plugin.py")],
                           capture_output=True, text=True, env=env, timeout=60)
    assert again.returncode == 0 and kritarc.read_text().count("enable_editgan_krita") == 1
