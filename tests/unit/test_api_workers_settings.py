"""``api.workers``: the default from the cores, the CLI option, and the /token budget split."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from alchemiscale_local.api.ratelimit import FailureLimiter
from alchemiscale_local.settings import APISettings


def test_default_workers_follow_the_cores_up_to_four():
    assert APISettings().workers == max(1, min(4, os.cpu_count() or 1))
    assert APISettings(workers=3).workers == 3
    with pytest.raises(ValidationError):
        APISettings(workers=0)


@pytest.mark.parametrize(
    ("workers", "identity", "address"), [(1, 10, 100), (2, 5, 50), (3, 3, 33), (64, 1, 1)]
)
def test_the_token_failure_budget_is_split_so_the_sum_stays_within_it(workers, identity, address):
    limiter = FailureLimiter.for_workers(workers)
    assert (limiter.per_identity, limiter.per_address) == (identity, address)
    assert workers * limiter.per_identity <= 10 or limiter.per_identity == 1


def test_up_has_an_api_workers_option():
    from typer.testing import CliRunner

    from alchemiscale_local.cli import app

    result = CliRunner().invoke(app, ["up", "--api-workers", "0"])
    assert result.exit_code == 2 and "--api-workers" in result.output
