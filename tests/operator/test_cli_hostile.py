"""Every `metallb` subcommand answers missing, unreadable, malformed and hostile input with one line, never a traceback."""

from __future__ import annotations

import argparse
import io
import logging
import os
import random
import re
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from metallb.operator import cli, commands

METALLB = [sys.executable, "-m", "metallb.operator"]
ROOT = Path(__file__).resolve().parents[2]
GOOD_CONFIG = (ROOT / "examples" / "config.yaml").read_text()
GOOD_SERVICE = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec: {type: LoadBalancer}\n"


def alias_bomb(levels: int) -> str:
    """A few hundred bytes of nested aliases that expand to 9 ** levels scalars."""
    anchors = ["&a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    anchors += [f"&{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]" for i in range(levels)]
    return "peers:\n- my-asn: [" + ", ".join(anchors) + "]\n"


#: Configs that broke a command before issue 11 (bytes: written as they are).
HOSTILE_CONFIGS: dict[str, str | bytes] = {
    "syntax": "address-pools: [oops\n",
    "deep-flow": "peers: " + "[" * 3000 + "]" * 3000,
    "alias-bomb": alias_bomb(8),
    "hold-time-400-nines": "peers:\n- {my-asn: 1, peer-asn: 2, peer-address: 192.0.2.1, hold-time: "
    + "9" * 400
    + "s}\n",
    "asn-5000-digits": "peers:\n- my-asn: " + "9" * 5000 + "\n",
    "str-tag-on-map": "peers: !!str {a: b}\n",
    "map-tag-on-scalar": "peers: !!map abc\n",
    "python-tag": "peers: !!python/object/apply:os.system [true]\n",
    "timestamp-like": "name: 2001-13-45\n",
    "multi-line-value": 'address-pools:\n- name: "a\\nb"\n  protocol: "x\\ny"\n  addresses: [192.0.2.0/24]\n',
    "not-utf8": b"name: caf\xe9\n",
    "nul": b"peers: \x00\n",
    "random-64k": random.Random(11).randbytes(64 * 1024),
    "configmap-data-list": "apiVersion: v1\nkind: ConfigMap\ndata: [a, b]\n",
    "configmap-data-string": "apiVersion: v1\nkind: ConfigMap\ndata: config\n",
    "configmap-config-list": "apiVersion: v1\nkind: ConfigMap\ndata: {config: [a]}\n",
    "configmap-no-config": "apiVersion: v1\nkind: ConfigMap\ndata: {other: x}\n",
}
#: Services files a running standalone must refuse (the config is good).
HOSTILE_SERVICES: dict[str, str | bytes] = {
    "syntax": "kind: Service\nmetadata: [\n",
    "alias-bomb": alias_bomb(8).replace("peers", "items"),
    "scalar-document": "just text\n",
    "list-document": "- a\n- b\n",
    "metadata-list": "kind: Service\nmetadata: [a]\nspec: {type: LoadBalancer}\n",
    "no-name": "kind: Service\nmetadata: {namespace: x}\nspec: {type: LoadBalancer}\n",
    "ports-of-lists": GOOD_SERVICE.replace("{type: LoadBalancer}", "{type: LoadBalancer, ports: [[80]]}"),
    "port-not-a-number": GOOD_SERVICE.replace("{type: LoadBalancer}", "{type: LoadBalancer, ports: [{port: x}]}"),
    "port-arabic-digits": GOOD_SERVICE.replace("{type: LoadBalancer}", "{type: LoadBalancer, ports: [{port: ٨٠}]}"),
    "ip-families-of-maps": GOOD_SERVICE.replace("{type: LoadBalancer}", "{type: LoadBalancer, ipFamilies: [{a: b}]}"),
    "status-list": GOOD_SERVICE + "status: [a]\n",
    "not-utf8": b"kind: Service\nmetadata: {name: caf\xe9}\n",
}
#: JSON a state file or /status answer must have the shape of.
HOSTILE_STATES: dict[str, str | bytes] = {
    "syntax": "{",
    "deep": "[" * 100_000,
    "list": "[1, 2]",
    "services-list": '{"services": [1]}',
    "service-not-object": '{"services": {"a": 1}}',
    "not-utf8": b'{"services": {"caf\xe9": {}}}',
}


@pytest.fixture(name="files", scope="module")
def _files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Paths of every kind of bad input, by name (the good config and services too)."""
    tmp = tmp_path_factory.mktemp("hostile")
    out = {"missing": str(tmp / "missing.yaml"), "directory": str(tmp), "not-a-directory": str(tmp / "good.yaml" / "x")}
    for group, contents in (
        ("config", HOSTILE_CONFIGS),
        ("services", HOSTILE_SERVICES),
        ("state", HOSTILE_STATES),
        ("good", {"config": GOOD_CONFIG, "services": GOOD_SERVICE}),
    ):
        for name, content in contents.items():
            path = tmp / f"{group}-{name}"
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
            out[f"{group}:{name}"] = str(path)
    # Unreadable for a user; root reads it and finds a syntax error: a failure either way.
    unreadable = tmp / "unreadable.yaml"
    unreadable.write_text("address-pools: [oops\n{")
    unreadable.chmod(0)
    out["unreadable"] = str(unreadable)
    (tmp / "good.yaml").write_text(GOOD_CONFIG)
    out["scratch-state"] = str(tmp_path_factory.mktemp("scratch") / "state.json")  # what standalone may write
    return out


def unusable(files: dict[str, str], group: str) -> list[str]:
    """Every path of *group* a command must refuse: hostile contents, and paths that cannot be read."""
    return [files[k] for k in ("missing", "directory", "not-a-directory", "unreadable")] + [
        path for key, path in files.items() if key.startswith(group + ":")
    ]


#: Commands run in a process of their own, with a timeout: the address service binds and serves early, so a
#: case it accepted would never return. (Every other case fails before anything starts; standalone has --once.)
LONG_RUNNING = ("address-service",)


def cases(files: dict[str, str]) -> dict[str, list[tuple[list[str], set[int], bytes]]]:
    """Per command: (arguments, allowed exit statuses, standard input)."""
    configs = unusable(files, "config")
    # The config parser has its own generated tests: commands that only pass a file on get a sample.
    sample = [
        *configs[:4],
        *(files[f"config:{k}"] for k in ("syntax", "alias-bomb", "not-utf8", "configmap-data-list")),
    ]
    kubeconfigs = [*configs[:3], *(files[f"config:{k}"] for k in ("syntax", "alias-bomb", "not-utf8"))]
    good_config, good_services = files["good:config"], files["good:services"]
    standalone = ["standalone", "--once", "--node", "n1", "--state", files["scratch-state"], "--metrics-port", "0"]
    service = ["address-service", "--listen", "127.0.0.1:0", "--cidr", "192.0.2.0/24"]
    # The address service writes its state file: it gets copies.
    scratch = Path(files["scratch-state"]).parent
    as_states = [files["directory"], files["not-a-directory"]]
    for name in ("syntax", "deep", "list", "not-utf8"):  # its own format ignores keys it does not know
        copy = scratch / f"address-service-{name}.json"
        copy.write_bytes(Path(files[f"state:{name}"]).read_bytes())
        as_states.append(str(copy))
    return {
        "check-config": [
            *(([path], {1}, b"") for path in configs),
            (["-"], {1}, b"peers: \x00\n"),
            (["-"], {1}, b"name: caf\xe9\n"),
            (["-"], {1}, b"apiVersion: v1\nkind: ConfigMap\ndata: [1]\n"),
            ([], {2}, b""),
        ],
        "convert-config": [
            *(([path], {1}, b"") for path in configs),
            (["-"], {1}, b"peers: \x00\n"),
            (["-"], {1}, b"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\n"),
            (["-"], {1}, b"apiVersion: v1\nkind: ConfigMap\ndata: {config: 42}\n"),
            ([], {2}, b""),
        ],
        "new-plugin": [
            *(([name], {1}, b"") for name in ("", "a\nb", "../x", "Bad Name", "x" * 100, "address-pools")),
            *(
                (["file-pools", "--directory", path], {1}, b"")
                for path in (files["good:config"], files["directory"], files["not-a-directory"], "/proc/1/x")
            ),
            ([], {2}, b""),
        ],
        "allocate": [
            *((["--config", path, "default/web"], {1}, b"") for path in configs),
            *(
                (["--config", good_config, spec], {1}, b"")
                for spec in ("", "default/a=notanip", "default/b#x", "default/c%4,x", "default/d@nope", "d/e=1\n2")
            ),
            (["default/web"], {2}, b""),
        ],
        "standalone": [
            *(([*standalone, "--config", path, "--services", good_services], {1}, b"") for path in sample),
            *(
                ([*standalone, "--config", good_config, "--services", path], {1}, b"")
                for path in unusable(files, "services")
            ),
            *(
                ([*standalone, "--config", good_config, "--services", good_services, option, value], {2}, b"")
                for option, value in (("--poll-interval", "0"), ("--poll-interval", "nan"), ("--metrics-port", "70000"))
            ),
            (["standalone", "--config", good_config], {2}, b""),
        ],
        "controller": [
            *((["controller", "--kubeconfig", path], {1}, b"") for path in kubeconfigs),
            *(
                (["controller", option, value], {2}, b"")
                for option, value in (
                    ("--workers", "0"),
                    ("--lease-duration", "nan"),
                    ("--reconcile-interval", "inf"),
                    ("--metrics-port", "70000"),
                )
            ),
        ],
        "speaker": [
            *((["speaker", "--node-name", "n1", "--kubeconfig", path], {1}, b"") for path in kubeconfigs[:4]),
            (["speaker", "--kubeconfig", files["missing"]], {2}, b""),  # no node name
            (["speaker", "--node-name", "n1", "--lease-renew", "0"], {2}, b""),
            (["speaker", "--node-name", "n1", "--metrics-port", "-1"], {2}, b""),
        ],
        "status": [
            *((["status", "--state", path], {1}, b"") for path in unusable(files, "state")),
            *(
                (["status", "--url", url], {1}, b"")
                for url in ("nope", "http://127.0.0.1:1", "http://[::1", f"file://{files['state:list']}")
            ),
            *((["status", "--kubeconfig", path], {1}, b"") for path in kubeconfigs),
            (["status", "--state", files["missing"], "--url", "x"], {2}, b""),
        ],
        "drain": [
            *((["drain", "n1", "--kubeconfig", path], {1}, b"") for path in kubeconfigs),
            (["drain", "--undo"], {2}, b""),  # no node
        ],
        "explain": [
            *((["explain", "default/web", "--state", path], {1}, b"") for path in unusable(files, "state")),
            *((["explain", "default/web", "--state", files["missing"], "--config", path], {1}, b"") for path in sample),
            *(
                (["explain", "default/web", "--url", url], {1}, b"")
                for url in ("nope", "http://127.0.0.1:1", "http://[::1", f"file://{files['state:list']}")
            ),
            *((["explain", "default/web", "--kubeconfig", path], {1}, b"") for path in kubeconfigs),
            (["explain", "a/b/c", "--state", files["missing"]], {2}, b""),
            (["explain", "a/web", "-n", "b", "--state", files["missing"]], {2}, b""),
            (["explain", "default/web", "-o", "xml"], {2}, b""),
        ],
        "plugins": [(["plugins", "--json", "extra"], {2}, b"")],
        "address-service": [
            (["address-service", "--listen", "nowhere"], {2}, b""),
            ([*service[:2], "127.0.0.1:99999", *service[3:]], {1, 2}, b""),
            ([*service[:3], "not-a-cidr"], {1, 2}, b""),
            ([*service, "--backend", "nope"], {2}, b""),
            *(([*service, "--state-file", path], {1, 2}, b"") for path in as_states),
            *(([*service, "--auth-token-file", path], {1, 2}, b"") for path in (files["missing"], files["directory"])),
            ([*service, "--tls-cert", files["missing"]], {1, 2}, b""),
        ],
    }


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """Every subcommand of the installed metallb, hidden ones (no help line) and plugins' included."""
    (action,) = [a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def run_metallb(argv: list[str], stdin: bytes) -> tuple[int | None, str, str]:
    """`metallb ARGV` in its own process, as a user runs it, with no METALLB_* settings: status, stdout, stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METALLB_")}
    env |= {"PYTHONSAFEPATH": "1", "KUBECONFIG": "/nonexistent/kubeconfig"}
    result = subprocess.run([*METALLB, *argv], input=stdin, capture_output=True, env=env, timeout=60, cwd="/")
    return result.returncode, result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")


@pytest.fixture(name="in_process")
def _in_process(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """`metallb ARGV` in this process (no start-up cost): status, stdout, stderr; a traceback if it raised."""

    def run(argv: list[str], stdin: bytes) -> tuple[int | None, str, str]:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        root = logging.getLogger()
        saved = root.handlers[:], root.level
        raised = ""
        try:
            status = cli.main(argv)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except Exception:  # noqa: BLE001 - what the test is looking for, shown as the user would see it
            status, raised = None, traceback.format_exc()
        finally:
            root.handlers[:], root.level = saved
        out, err = capsys.readouterr()
        return status, out, err + raised

    return run


def check(result: tuple[int | None, str, str], argv: list[str], statuses: set[int]) -> None:
    """The command exited with one of *statuses*, one line on stderr, and no traceback anywhere."""
    status, out, err = result
    shown = f"metallb {argv!r}: status {status}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    assert "Traceback" not in out + err, shown
    assert status in statuses, shown
    assert len(problems(err)) == 1, shown


def problems(err: str) -> list[str]:
    """The lines of *err* that say something went wrong: every line but INFO and DEBUG log records."""
    return [line for line in err.strip().splitlines() if not re.match(r"\d\d:\d\d:\d\d (INFO|DEBUG) ", line)]


class TestEveryCommand:
    """Bad input to any subcommand is one line on stderr, exit status 1 or 2, and no traceback."""

    def test_every_command_has_cases(self, files: dict[str, str]) -> None:
        """The operator's commands and the bundled plugin's address-service each have hostile cases here."""
        assert set(cases(files)) >= {c.name for c in commands.COMMANDS} | {"address-service"}

    @pytest.mark.parametrize("name", sorted(subcommands()))
    def test_unknown_option(self, name: str, in_process) -> None:  # type: ignore[no-untyped-def]
        """Every subcommand, a plugin's too, refuses an unknown option with one line and status 2."""
        check(in_process([name, "--no-such-option"], b""), [name], {2})

    @pytest.mark.parametrize("name", sorted({c.name for c in commands.COMMANDS} | {"address-service"}))
    def test_bad_inputs(self, files: dict[str, str], name: str, in_process) -> None:  # type: ignore[no-untyped-def]
        """Missing, unreadable, malformed and hostile inputs of the command, each in turn."""
        run = run_metallb if name in LONG_RUNNING else in_process
        for argv, statuses, stdin in cases(files)[name]:
            full = argv if argv and argv[0] == name else [name, *argv]
            check(run(full, stdin), full, statuses)

    def test_in_a_process_of_its_own(self, files: dict[str, str]) -> None:
        """The in-process runs agree with real processes: standard input, status, no traceback."""
        for argv, stdin in (
            (["check-config", "-"], b"peers: \x00\n"),
            (["check-config", files["config:alias-bomb"]], b""),
            (["controller", "--kubeconfig", files["config:syntax"]], b""),
            (["speaker", "--node-name", "n1", "--kubeconfig", files["directory"]], b""),
        ):
            check(run_metallb(argv, stdin), argv, {1})

    def test_check_config_names_the_problem(self, files: dict[str, str], in_process) -> None:  # type: ignore[no-untyped-def]
        """check-config's line says what is wrong with each kind of input."""
        expected = {
            "missing": "cannot read: No such file or directory",
            "directory": "cannot read: Is a directory",
            "config:not-utf8": "byte 0xe9 at offset 9 (line 1) is not UTF-8",
            "config:configmap-data-list": '"data" must be a mapping of keys to text, not a list',
            "config:configmap-data-string": '"data" must be a mapping of keys to text, not a string',
            "config:configmap-config-list": "data.config must be text",
            "config:alias-bomb": "aliases expand to more than 10000 nodes",
            "config:multi-line-value": 'value "x\\ny"',
        }
        for key, words in expected.items():
            _, _, err = in_process(["check-config", files[key]], b"")
            assert words in err, (key, err)

    def test_warning_line_for_a_hold_time_rounded_to_zero(self, tmp_path: Path, in_process) -> None:  # type: ignore[no-untyped-def]
        """A valid config with a hold time under a second passes, with a warning line naming what it turns off."""
        path = tmp_path / "config.yaml"
        path.write_text("peers:\n- {my-asn: 1, peer-asn: 2, peer-address: 192.0.2.1, hold-time: 0.5s}\n")
        status, _, err = in_process(["check-config", "--quiet", str(path)], b"")
        assert status == 0
        assert err.splitlines() == [
            f'{path}: warning: peer #1: field "hold-time": value "0.5s" is less than a second and rounds down to 0, '
            'which turns off the hold timer and keepalives; write "0s" to mean that, or at least "3s"'
        ]

    def test_unexpected_errors_show_their_traceback_at_debug_level(self, in_process) -> None:  # type: ignore[no-untyped-def]
        """An error no command expected is one line, and its traceback is there with --log-level debug."""
        argv = ["allocate", "--config", "-", "default/web"]
        stdin = b"address-pools: [{name: p, protocol: layer2, addresses: [192.0.2.0/24]}]\n"
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("metallb.allocator.Allocator.allocate", _boom)
            _, _, quiet = in_process(argv, stdin)
            status, _, loud = in_process(["--log-level", "debug", *argv], stdin)
        assert quiet.strip().splitlines()[-1] == (
            "metallb allocate: unexpected error: RuntimeError: a bug (run with --log-level debug for the traceback)"
        )
        assert status == 1 and "Traceback" in loud and "in _boom" in loud
        assert loud.strip().splitlines()[-1] == "metallb allocate: unexpected error: RuntimeError: a bug"


def _boom(*_: object, **__: object) -> None:
    raise RuntimeError("a bug")


class TestStateFile:
    """A standalone state file that is not one is a one-line error, and a fresh start."""

    @pytest.mark.parametrize("name", sorted(HOSTILE_STATES))
    def test_bad_state_file(self, files: dict[str, str], name: str, tmp_path: Path) -> None:
        """standalone --once with a hostile state file allocates from scratch, logging one line."""
        state = tmp_path / "state.json"
        state.write_bytes(Path(files[f"state:{name}"]).read_bytes())
        argv = ["standalone", "--once", "--node", "n1", "--metrics-port", "0", "--state", str(state)]
        status, _, err = run_metallb(
            [*argv, "--config", files["good:config"], "--services", files["good:services"]], b""
        )
        assert status == 0 and "Traceback" not in err, err
        (line,) = problems(err)
        assert "state file" in line and "starting empty" in line
