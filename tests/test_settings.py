"""settings.py: every environment knob parsed once per environment into one frozen object."""

from __future__ import annotations

import dataclasses

import pytest

from pistachio_infra.errors import PistachioError
from pistachio_infra.settings import get_settings


def test_same_environment_gives_the_same_parsed_object_and_a_change_a_new_one(monkeypatch):
    monkeypatch.setenv("PISTACHIO_WATCHDOG_POLL_S", "2.5")
    first = get_settings()
    assert first is get_settings()
    assert first.watchdog.poll_s == 2.5
    monkeypatch.setenv("PISTACHIO_WATCHDOG_POLL_S", "4")
    assert get_settings().watchdog.poll_s == 4.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.sandbox = True  # type: ignore[misc]


def test_defaults_when_unset(monkeypatch):
    names = ("PISTACHIO_TRAIN_POLL_S", "PISTACHIO_WATCHDOG_NOBODY_CAME_S", "PISTACHIO_SANDBOX", "PISTACHIO_POD_POLL_S")
    for name in names:
        monkeypatch.delenv(name, raising=False)
    s = get_settings()
    assert (s.train_poll_s, s.watchdog.nobody_came_s, s.sandbox, s.pod.poll_s) == (1.0, 900.0, False, None)


@pytest.mark.parametrize("value", ["1", "true", "ON", "yes"])
def test_sandbox_flag_spellings(monkeypatch, value):
    monkeypatch.setenv("PISTACHIO_SANDBOX", value)
    assert get_settings().sandbox


def test_a_knob_that_is_not_a_number_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("PISTACHIO_POD_POLL_S", "soon")
    with pytest.raises(PistachioError) as err:
        get_settings()
    assert "PISTACHIO_POD_POLL_S='soon' is not a number" in err.value.one_line()


def test_secrets_never_show_in_the_repr(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secretvalue123")
    s = get_settings()
    assert s.secret("HF_TOKEN") == "hf_secretvalue123"
    assert "hf_secretvalue123" not in repr(s)
