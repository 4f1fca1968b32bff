"""Extender settings from flags and NETAWARE_EXTENDER_* variables: flags win over variables, variables over defaults,
and a variable that is not a value of its setting's type is refused with its name and the likely cause (a Service
named netaware-extender sets NETAWARE_EXTENDER_PORT=tcp://... in every pod of its namespace with service links)."""

from __future__ import annotations

import pytest

from netaware.extender.settings import parse_settings


def test_flags_win_over_variables_which_win_over_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETAWARE_EXTENDER_PORT", "9999")
    monkeypatch.setenv("NETAWARE_EXTENDER_STRATEGY", "routed")
    settings = parse_settings(["--strategy", "seed", "--metrics", "0.0.0.0:9090"])
    assert (settings.port, settings.strategy, settings.metrics, settings.threads) == (9999, "seed", "0.0.0.0:9090", 8)


def test_a_service_link_in_a_setting_is_refused_with_its_cause(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NETAWARE_EXTENDER_PORT", "tcp://10.96.59.19:9090")
    with pytest.raises(SystemExit) as exited:
        parse_settings([])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "NETAWARE_EXTENDER_PORT='tcp://10.96.59.19:9090' is not a valid int" in error
    assert "enableServiceLinks: false" in error
