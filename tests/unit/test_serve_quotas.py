"""``serve``'s quotas and token policy: DIR/methodhub.toml, the flags over it, Azure's presets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from methodhub.calls.quotas import QuotaLimits
from methodhub.cli.app import build_parser
from methodhub.cli.serve_quotas import SettingsError, quota_settings
from methodhub.config import TokenPolicy
from methodhub.dialects.azure.quota_presets import azure_preset


def _settings(tmp_path: Path, toml: str | None, *flags: str) -> tuple[QuotaLimits, TokenPolicy, int]:
    if toml is not None:
        (tmp_path / "methodhub.toml").write_text(toml)
    args = build_parser().parse_args(["serve", *flags])
    return quota_settings(args, tmp_path)


def test_without_file_or_flags_nothing_is_limited_but_64_in_flight(tmp_path: Path) -> None:
    limits, policy, in_flight = _settings(tmp_path, None)
    assert limits == QuotaLimits()
    assert limits.any is False
    assert policy == TokenPolicy(max_lifetime=None, clock_skew=0.0)
    assert in_flight == 64


def test_the_file_sets_every_key(tmp_path: Path) -> None:
    limits, policy, in_flight = _settings(
        tmp_path,
        """
[quotas]
method_calls_per_second = 100
method_calls_per_policy_per_second = 20.5
device_connects_per_second = 50
registry_operations_per_second = "off"
job_device_operations_per_second = 0
burst_seconds = 2
nodes = 3
max_calls_in_flight_per_device = 8

[tokens]
max_lifetime = "365d"
clock_skew = "5m"
""",
    )
    assert limits == QuotaLimits(
        method_calls_per_second=100,
        method_calls_per_policy_per_second=20.5,
        device_connects_per_second=50,
        registry_operations_per_second=None,
        job_device_operations_per_second=None,
        burst_seconds=2,
        nodes=3,
    )
    assert policy == TokenPolicy(max_lifetime=365 * 86400, clock_skew=300)
    assert in_flight == 8


def test_flags_override_the_file_and_the_file_overrides_its_preset(tmp_path: Path) -> None:
    toml = '[quotas]\npreset = "S1"\nmethod_calls_per_second = 7\n[tokens]\nclock_skew = 60\n'
    limits, policy, _ = _settings(tmp_path, toml)
    assert limits.method_calls_per_second == 7  # the file's key over its preset's 40
    assert limits.device_connects_per_second == 100  # the rest is S1's
    assert limits.preset == "S1"
    limits, policy, in_flight = _settings(
        tmp_path,
        toml,
        "--max-calls-per-second",
        "off",
        "--max-connects-per-second",
        "5",
        "--token-clock-skew",
        "0",
        "--max-token-lifetime",
        "1h",
        "--max-calls-in-flight",
        "2",
    )
    assert limits.method_calls_per_second is None
    assert limits.device_connects_per_second == 5
    assert policy == TokenPolicy(max_lifetime=3600, clock_skew=0)
    assert in_flight == 2


def test_a_preset_flag_replaces_the_files_preset(tmp_path: Path) -> None:
    limits, _, _ = _settings(
        tmp_path, '[quotas]\npreset = "S1"\n', "--quota-preset", "S3", "--quota-units", "2"
    )
    assert limits == azure_preset("S3", 2)
    limits, _, _ = _settings(tmp_path, '[quotas]\npreset = "S1"\n', "--quota-preset", "off")
    assert limits.any is False


def test_azure_presets_carry_the_documented_numbers() -> None:
    s1 = azure_preset("S1")
    assert (
        s1.method_calls_per_second,
        s1.device_connects_per_second,
        s1.job_device_operations_per_second,
    ) == (
        40,  # 160 KB/s/unit in 4 KB meters
        100,  # the higher of 100/s and 12/s/unit
        10,
    )
    assert s1.registry_operations_per_second == pytest.approx(1.6667, abs=1e-4)  # 100/min/unit
    assert azure_preset("S1", 9).device_connects_per_second == 108  # 9 * 12, Azure's own example
    s2 = azure_preset("s2", 20)
    assert (
        s2.method_calls_per_second,
        s2.device_connects_per_second,
        s2.job_device_operations_per_second,
    ) == (
        2400,
        2400,
        20,  # the higher of 10/s and 1/s/unit
    )
    s3 = azure_preset("S3", 2)
    assert (
        s3.method_calls_per_second,
        s3.device_connects_per_second,
        s3.job_device_operations_per_second,
    ) == (
        12_000,
        12_000,
        100,
    )
    assert s3.registry_operations_per_second == pytest.approx(166.6667, abs=1e-4)
    assert s3.burst_seconds == 60 and s3.preset == "S3x2"
    assert s3.method_calls_per_policy_per_second is None  # Azure has no per-policy rate


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[quotas\n", "is not valid TOML"),
        ("[quota]\n", "unknown table(s) quota"),
        ("[quotas]\nmethod_calls = 5\n", "unknown key(s) method_calls in [quotas]"),
        ('[quotas]\nmethod_calls_per_second = "fast"\n', "method_calls_per_second: expected a number"),
        ("[quotas]\nmethod_calls_per_second = -1\n", "0 or more"),
        ("[quotas]\nmethod_calls_per_second = true\n", "expected a number"),
        ('[quotas]\npreset = "S4"\n', "one of S1, S2, S3 or off"),
        ("[quotas]\nunits = 0\n", "units: expected a whole number of at least 1"),
        ("[quotas]\nburst_seconds = 0\n", "burst_seconds must be more than 0"),
        ('[tokens]\nmax_lifetime = "soon"\n', "not a duration"),
        ("[tokens]\nmax_lifetime = 0\n", "must be positive"),
        ('[tokens]\nclock_skew = "2d"\n', "more than a day"),
        ("quotas = 3\n", "quotas must be a table"),
    ],
)
def test_bad_values_name_the_file_and_the_key(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        _settings(tmp_path, toml)
    assert message in str(caught.value)
    assert str(tmp_path / "methodhub.toml") in str(caught.value)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--quota-preset", "S9"], "one of S1, S2, S3 or off"),
        (["--max-calls-per-second", "lots"], "expected a number"),
        (["--max-token-lifetime", "-5"], "cannot be negative"),
        (["--quota-nodes", "0"], "at least 1"),
    ],
)
def test_bad_flags_are_usage_errors(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["serve", *flags])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_serve_with_a_bad_file_says_one_line_and_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "methodhub.toml").write_text("[quotas]\nnodes = 'many'\n")
    done = subprocess.run(
        [sys.executable, "-m", "methodhub", "--data-dir", str(tmp_path), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"methodhub: error: cannot start: {tmp_path / 'methodhub.toml'}: nodes: expected a whole number "
        "of at least 1, got 'many'"
    ]


def test_jobs_pace_to_the_lower_of_job_rate_and_the_quota_share() -> None:
    from methodhub.process.hub import job_rate

    assert job_rate(None, None) is None
    assert job_rate(50, None) == 50
    assert job_rate(None, 10) == 10
    assert job_rate(50, 10) == 10
    assert job_rate(5, 10) == 5
