"""``plasticore build | flash | deploy`` end to end with the fake builder (no synthesis)."""

import numpy as np
import pytest
from test_firmware_build import FakeRunner

import plasticore.host as host
from plasticore.app.cli import main
from plasticore.firmware import build as B
from plasticore.firmware import deploy as D
from plasticore.firmware.errors import DeployNotAvailableError


@pytest.fixture
def fake_builder(monkeypatch):
    run = FakeRunner()
    monkeypatch.setattr(B, "AmaranthToolchain", lambda: run)
    monkeypatch.setattr(B, "toolchain_env", lambda family, base=None: {})
    return run


@pytest.fixture
def bundle_dir(tmp_path):
    from plasticore.bundle import save_bundle
    from plasticore.sim.random_bundle import random_bundle

    d = tmp_path / "bundle"
    save_bundle(random_bundle(np.random.default_rng(1), sizes=[16, 8, 4]), d)
    return d


def test_build_list(capsys):
    assert main(["build", "--list", "--board", "ulx3s"]) == 0
    out = capsys.readouterr().out
    assert "ulx3s" in out and "icebreaker" in out and "echo" in out and "design id" in out


def test_build_then_cached(tmp_path, capsys, fake_builder):
    args = ["build", "--board", "icebreaker", "--design", "echo", "--out-dir", str(tmp_path), "-q"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "built in" in out and "fmax clk: 58.62 MHz" in out and len(fake_builder.jobs) == 1
    assert main(args) == 0
    assert "(cached)" in capsys.readouterr().out and len(fake_builder.jobs) == 1
    assert main([*args, "--json"]) == 0
    assert '"cached": true' in capsys.readouterr().out


def test_flash_needs_a_build(tmp_path, capsys, fake_builder):
    base = ["flash", "--board", "ulx3s", "--design", "echo", "--out-dir", str(tmp_path)]
    assert main([*base, "--dry-run"]) == 2
    assert "run `plasticore build --board ulx3s` first" in capsys.readouterr().err
    assert main(["build", "--board", "ulx3s", "--design", "echo", "--out-dir", str(tmp_path), "-q"]) == 0
    capsys.readouterr()
    assert main([*base, "--dry-run"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.split()[1:3] == ["-b", "ulx3s"] and out.endswith("top.bit") and str(tmp_path) in out


def test_deploy_uses_the_host_connect():
    import inspect

    params = inspect.signature(host.connect).parameters
    assert {"port", "baudrate", "expected_design_id"} <= set(params)


def test_deploy_without_host_api(tmp_path, capsys, fake_builder, bundle_dir, monkeypatch):
    monkeypatch.delattr(host, "connect", raising=False)
    rc = main(["deploy", "--board", "icebreaker", "--design", "echo", "--out-dir", str(tmp_path), "--bundle",
               str(bundle_dir), "--port", "loop://", "--skip-flash", "-q"])
    assert rc == 2 and "not available yet" in capsys.readouterr().err
    assert len(fake_builder.jobs) == 1  # it built before giving up
    with pytest.raises(DeployNotAvailableError):
        D.open_device("loop://", baudrate=1_000_000, expected_design_id=1)


def test_deploy_orchestration(tmp_path, fake_builder, bundle_dir, monkeypatch):
    calls = []

    class FakeDevice:
        def deploy(self, bundle):
            calls.append(("deploy", bundle.n_in))

        def run(self, x, labels=None, record_membranes=False, progress=None):
            calls.append(("run", x.shape))
            progress(len(x))
            return "result"

        def close(self):
            calls.append(("close",))

    def connect(port, *, baudrate, expected_design_id):
        calls.append(("connect", port, baudrate, expected_design_id))
        return FakeDevice()

    monkeypatch.setattr(host, "connect", connect, raising=False)
    x = np.zeros((2, 3, 16), dtype=np.int64)
    res = D.deploy("icebreaker", bundle_dir, "/dev/ttyUSB9", config={"design": "echo"}, root=tmp_path,
                   skip_flash=True, inputs=x, progress=False)
    assert res.run == "result" and res.flash_cmd is None
    assert calls == [("connect", "/dev/ttyUSB9", 1_000_000, res.build.design_id), ("deploy", 16), ("run", (2, 3, 16)),
                     ("close",)]
    # dry run: build + flash command, no connection
    calls.clear()
    res = D.deploy("icebreaker", bundle_dir, "/dev/ttyUSB9", config={"design": "echo"}, root=tmp_path,
                   dry_run=True, progress=False)
    assert res.build.cached and res.flash_cmd[-1].endswith("top.bin") and calls == []
