"""``scopes_exclude`` (alchemiscale's compute setting): a service never claims from excluded scopes."""

from __future__ import annotations

import uuid

import pytest
from api_helpers import submit_toy

from alchemiscale_local.client import ValidationError


def test_claims_skip_excluded_scopes(user_client, compute_client):
    campaign = f"excl{uuid.uuid4().hex[:8]}"
    keep, skip = f"org1-{campaign}-keep", f"org1-{campaign}-secret"
    tasks = {}
    for scope in (keep, skip):
        net, _, tfs = submit_toy(user_client, scope, n=2)
        tasks[scope] = [user_client.create_tasks(tf)[0] for tf in tfs]
        user_client.action_tasks(tasks[scope], net)
    service = f"svc-{uuid.uuid4().hex[:8]}"
    compute_client.register(service)
    wide = f"org1-{campaign}-*"
    got = compute_client.claim_tasks(service, count=4, scopes=[wide], scopes_exclude=[skip])
    assert set(got[:2]) == set(tasks[keep]) and got[2:] == [None, None]
    # a second service: everything left is excluded by a wildcard that covers the whole campaign
    other = f"svc-{uuid.uuid4().hex[:8]}"
    compute_client.register(other)
    assert compute_client.claim_tasks(other, count=2, scopes=[wide], scopes_exclude=[wide]) == [None, None]
    # without the exclusion the secret tasks are claimable
    assert set(compute_client.claim_tasks(other, count=2, scopes=[wide])) == set(tasks[skip])
    with pytest.raises(ValidationError):
        compute_client.claim_tasks(other, scopes=[wide], scopes_exclude=["bad scope"])
