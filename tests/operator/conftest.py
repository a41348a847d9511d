"""Operator test fixtures: a Kubernetes API emulator on loopback and an official client pointed at it."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from kubernetes import client


def _load_emulator() -> ModuleType:
    """Import tests/kube_emulator.py by path: tests are no package, so it cannot be imported by name."""
    name = "metallb_tests_kube_emulator"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "kube_emulator.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up here while the class is built
        spec.loader.exec_module(module)
    return sys.modules[name]


kube_emulator = _load_emulator()


@pytest.fixture
def make_kube() -> Iterator[Callable[..., Any]]:
    """A factory of started emulators taking ``KubeEmulator`` options (history, bookmark_interval...)."""
    started: list[Any] = []

    def make(**options: Any) -> Any:
        started.append(kube_emulator.KubeEmulator(**options).start())
        return started[-1]

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def kube(make_kube: Callable[..., Any]) -> Any:
    """A running emulator on a random 127.0.0.1 port; stopped, with its watches, after the test."""
    return make_kube()


@pytest.fixture
def kube_client(kube: Any) -> Iterator[client.ApiClient]:
    """A ``kubernetes.client.ApiClient`` configured for the ``kube`` emulator."""
    api = kube.api_client()
    try:
        yield api
    finally:
        api.close()
