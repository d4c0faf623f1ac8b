"""Webhooks in process, on both flavours (and both databases): subscriptions, signed in-order delivery, retries.

A real receiver listens on loopback; the test runs the fan-out and the
delivery rounds itself (the background threads are off here and on in
``test_servers.py``).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import time_machine
from click.testing import CliRunner
from prometheus_client import values
from taskman_plugins.webhooks import Webhooks, webhooks
from taskman_plugins.webhooks import sender as webhook_sender

from taskman.cli import cli
from tests.events.conftest import EventsApi
from tests.test_metrics import total
from tests.webhooks.receiver import Receiver, Trickler

FAST = {"APP_WEBHOOKS__RETRY_BASE": "1.0", "APP_WEBHOOKS__RETRY_MAX": "60.0", "APP_WEBHOOKS__TIMEOUT": "2.0"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.stop()


@pytest.fixture
def hooks(make_api: Callable[..., EventsApi], clock: time_machine.Traveller) -> EventsApi:
    return make_api(environ=FAST)


def service(api: EventsApi) -> Webhooks:
    return webhooks(api.runtime)


def deliver(api: EventsApi) -> None:
    """Fan out what committed, then send everything that is due."""
    api.round()
    while service(api).deliver_next():
        pass


def subscribe(api: EventsApi, url: str, **fields: Any) -> dict[str, Any]:
    result = api.post("/webhooks", {"url": url, **fields})
    assert result.status_code == 201, result.text
    return dict(result.json)


def test_subscriptions_are_created_listed_changed_and_deleted_and_the_secret_shown_once(
    hooks: EventsApi, receiver: Receiver
) -> None:
    created = subscribe(hooks, receiver.url, event_types=["task.*"], description="ci")
    assert created["secret"].startswith("whsec_")
    assert hooks.post("/webhooks", {"url": receiver.url}).headers["location"].startswith("/api/v1/webhooks/wh_")
    item = hooks.get(f"/webhooks/{created['id']}").json
    assert "secret" not in item and item["event_types"] == ["task.*"] and item["enabled"] is True
    assert next(w["id"] for w in hooks.get("/webhooks").json["items"]) == created["id"]
    assert all("secret" not in w for w in hooks.get("/webhooks").json["items"])
    changed = hooks.patch(f"/webhooks/{created['id']}", {"enabled": False, "event_types": ["*"]})
    assert changed.status_code == 200 and changed.json["enabled"] is False and changed.json["event_types"] == ["*"]
    assert hooks.delete(f"/webhooks/{created['id']}").status_code == 204
    assert hooks.get(f"/webhooks/{created['id']}").status_code == 404
    assert hooks.delete(f"/webhooks/{created['id']}").status_code == 404
    assert hooks.get("/webhooks/not-an-id").status_code == 404


@pytest.mark.parametrize(
    "body,pointer",
    [
        ({"url": "ftp://example.com/x"}, "/url"),
        ({"url": "https://user:pw@example.com/x"}, "/url"),
        ({"url": "https://example.com/x#frag"}, "/url"),
        ({"url": "https://exa mple.com/"}, "/url"),
        ({"url": "https://example.com", "event_types": []}, "/event_types"),
        ({"url": "https://example.com", "event_types": ["Task.*"]}, "/event_types/0"),
        ({"url": "https://example.com", "extra": 1}, ""),
        ({}, ""),
    ],
)
def test_a_bad_subscription_is_a_422_naming_the_field(hooks: EventsApi, body: dict[str, Any], pointer: str) -> None:
    result = hooks.post("/webhooks", body)
    assert result.status_code == 422, result.text
    assert pointer in [error["pointer"] for error in result.json["errors"]]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "http://localhost/x",
        "http://10.1.2.3/x",
        "http://169.254.169.254/latest",
        "http://[::1]/",
    ],
)
def test_private_targets_are_refused_in_production_settings(make_api: Callable[..., EventsApi], url: str) -> None:
    api = make_api(environ={"APP_WEBHOOKS__ALLOW_PRIVATE_TARGETS": "false"})
    result = api.post("/webhooks", {"url": url})
    assert result.status_code == 422, result.text
    assert "allow_private_targets" in result.json["errors"][0]["detail"]


def test_the_address_is_checked_again_at_delivery_time() -> None:
    outcome = webhook_sender.post(
        "https://hooks.example.com/x",
        b"{}",
        {},
        timeout=2,
        allow_private=False,
        resolver=lambda host, port: ["10.0.0.5"],
    )
    assert outcome.outcome == "refused" and "private" in (outcome.error or "")
    assert webhook_sender.address_problem("93.184.215.14") is None
    assert webhook_sender.address_problem("::ffff:127.0.0.1")


def test_events_are_delivered_in_order_signed_as_standard_webhooks(hooks: EventsApi, receiver: Receiver) -> None:
    created = subscribe(hooks, receiver.url, event_types=["task.*", "sprint.created"])
    hooks.project()
    hooks.sprint()
    hooks.task()
    hooks.patch("/tasks/T-1", {"title": "x"})
    deliver(hooks)
    wanted = [e for e in hooks.walk() if e["type"].startswith("task.") or e["type"] == "sprint.created"]
    assert [r.message_id for r in receiver.received] == [f"evt_{e['id']}" for e in wanted]
    for got, event in zip(receiver.received, wanted, strict=True):
        payload = got.verified(created["secret"])
        assert payload == {
            "id": event["id"],
            "type": event["type"],
            "timestamp": event["occurred_at"],
            "principal": None,
            "data": event["data"],
        }
    log = hooks.get(f"/webhooks/{created['id']}/deliveries").json["items"]
    assert [d["status"] for d in log] == ["succeeded"] * len(wanted)
    assert log[0]["last_attempt"]["status_code"] == 200 and log[0]["attempts"] == 1


def test_a_failing_receiver_is_retried_with_backoff_in_order_and_never_skipped(
    hooks: EventsApi, receiver: Receiver, clock: time_machine.Traveller
) -> None:
    created = subscribe(hooks, receiver.url)
    receiver.answers = [500, -1]  # a 500, then a connection dropped without an answer
    hooks.project()
    hooks.project("P-2")
    deliver(hooks)
    assert receiver.messages() == ["evt_1"], "the failed delivery holds the ones after it"
    deliver(hooks)
    assert receiver.messages() == ["evt_1"], "not before its backoff"
    clock.shift(datetime.timedelta(seconds=61))
    deliver(hooks)
    clock.shift(datetime.timedelta(seconds=61))
    deliver(hooks)
    assert receiver.messages() == ["evt_1", "evt_1", "evt_1", "evt_2"]
    attempts = hooks.get(f"/webhooks/{created['id']}/attempts").json["items"]
    assert [(a["event_id"], a["attempt"], a["outcome"], a["status_code"]) for a in reversed(attempts)] == [
        (1, 1, "server_error", 500),
        (1, 2, "connection_error", None),
        (1, 3, "success", 200),
        (2, 1, "success", 200),
    ]
    assert hooks.get(f"/webhooks/{created['id']}").json["consecutive_failures"] == 0


def test_a_410_disables_the_subscription_at_once_and_keeps_its_deliveries(
    hooks: EventsApi, receiver: Receiver, clock: time_machine.Traveller
) -> None:
    created = subscribe(hooks, receiver.url)
    receiver.answers = [410]
    hooks.project()
    hooks.project("P-2")
    deliver(hooks)
    clock.shift(datetime.timedelta(hours=1))
    deliver(hooks)
    assert receiver.messages() == ["evt_1"], "never retried"
    item = hooks.get(f"/webhooks/{created['id']}").json
    assert item["enabled"] is False and "410" in item["disabled_reason"] and item["pending_deliveries"] == 2
    pending = hooks.get(f"/webhooks/{created['id']}/deliveries", params={"status": "pending"}).json["items"]
    assert [d["event_id"] for d in pending] == [2, 1]
    assert hooks.patch(f"/webhooks/{created['id']}", {"enabled": True}).json["enabled"] is True
    deliver(hooks)
    assert receiver.messages() == ["evt_1", "evt_1", "evt_2"]


def test_a_subscription_that_keeps_failing_is_disabled_with_its_pending_deliveries_kept(
    make_api: Callable[..., EventsApi], receiver: Receiver, clock: time_machine.Traveller
) -> None:
    api = make_api(environ={**FAST, "APP_WEBHOOKS__DISABLE_AFTER": "3"})
    created = subscribe(api, receiver.url)
    receiver.default = 503
    api.project()
    for _ in range(5):
        deliver(api)
        clock.shift(datetime.timedelta(seconds=61))
    assert len(receiver.received) == 3
    item = api.get(f"/webhooks/{created['id']}").json
    assert item["enabled"] is False and item["pending_deliveries"] == 1
    assert "3 failed attempts in a row" in item["disabled_reason"]
    assert api.post(f"/webhooks/{created['id']}/ping").status_code == 409


def test_another_4xx_or_a_redirect_fails_that_delivery_and_the_next_goes(hooks: EventsApi, receiver: Receiver) -> None:
    created = subscribe(hooks, receiver.url)
    receiver.answers = [302, 400]
    hooks.project()
    hooks.project("P-2")
    hooks.project("P-3")
    deliver(hooks)
    assert receiver.messages() == ["evt_1", "evt_2", "evt_3"], "the redirect was not followed"
    log = hooks.get(f"/webhooks/{created['id']}/deliveries").json["items"]
    assert [(d["status"], d["last_attempt"]["status_code"]) for d in reversed(log)] == [
        ("failed", 302),
        ("failed", 400),
        ("succeeded", 200),
    ]


def test_a_receiver_never_gets_more_than_its_timeout() -> None:
    """A receiver answering a byte at a time (each well within the timeout) is cut off at the total deadline."""
    trickler = Trickler(pause=0.1)
    try:
        outcome = webhook_sender.post(trickler.url, b"{}", {}, timeout=0.5, allow_private=True)
    finally:
        trickler.close()
    assert outcome.outcome == "timeout" and outcome.status_code is None


def test_a_ping_is_signed_and_delivered_to_that_subscription_alone(hooks: EventsApi, receiver: Receiver) -> None:
    other = Receiver()
    try:
        created = subscribe(hooks, receiver.url)
        subscribe(hooks, other.url)
        queued = hooks.post(f"/webhooks/{created['id']}/ping")
        assert queued.status_code == 202 and queued.json["event_type"] == "webhook.ping"
        deliver(hooks)
        (got,) = receiver.received
        assert got.verified(created["secret"])["type"] == "webhook.ping"
        assert other.received == []
        assert hooks.post("/webhooks/wh_00000000000000000000/ping").status_code == 404
    finally:
        other.stop()


def test_delivery_metrics_by_outcome_and_the_oldest_undelivered_age(
    make_api: Callable[..., EventsApi],
    receiver: Receiver,
    clock: time_machine.Traveller,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(values, "ValueClass", values.MutexValue)  # this app's own registry, single-process
    hooks = make_api(environ=FAST)
    subscribe(hooks, receiver.url)
    receiver.answers = [500]
    hooks.project()
    deliver(hooks)
    clock.shift(datetime.timedelta(minutes=10))
    text = hooks.client.simulate_get("/metrics").text
    assert total(text, "webhook_deliveries_total", {"outcome": "server_error"}) == 1
    assert (total(text, "webhook_oldest_undelivered_seconds") or 0) >= 600
    deliver(hooks)
    text = hooks.client.simulate_get("/metrics").text
    assert total(text, "webhook_deliveries_total", {"outcome": "success"}) == 1
    assert total(text, "webhook_oldest_undelivered_seconds") == 0


@pytest.mark.parametrize(
    "params", [{"limit": "0"}, {"before": "٣"}, {"status": "lost"}, {"after": "1"}, {"limit": "99999999999999999999"}]
)
def test_a_bad_log_parameter_is_a_400(hooks: EventsApi, receiver: Receiver, params: dict[str, str]) -> None:
    created = subscribe(hooks, receiver.url)
    assert hooks.get(f"/webhooks/{created['id']}/deliveries", params=params).status_code == 400


def test_the_cli_adds_lists_shows_deliveries_and_removes(
    make_config: Callable[..., Any], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config()
    monkeypatch.setenv("APP_DATABASE__URL", config.database.url)
    monkeypatch.setenv("APP_ENVIRONMENT", "testing")
    runner = CliRunner()
    added = runner.invoke(cli, ["webhooks", "add", receiver.url, "--events", "task.*,sprint.*"])
    assert added.exit_code == 0, added.output
    secret = added.stdout.strip().splitlines()[-1]
    assert secret.startswith("whsec_")
    listed = runner.invoke(cli, ["webhooks", "list"])
    assert listed.exit_code == 0 and receiver.url in listed.output and secret not in listed.output
    webhook_id = listed.output.splitlines()[1].split()[0]
    shown = runner.invoke(cli, ["webhooks", "deliveries", webhook_id])
    assert shown.exit_code == 0 and "no deliveries" in shown.output
    assert runner.invoke(cli, ["webhooks", "deliveries", webhook_id, "--attempts"]).exit_code == 0
    bad = runner.invoke(cli, ["webhooks", "add", "ftp://x"])
    assert bad.exit_code != 0 and "http" in bad.output
    assert runner.invoke(cli, ["webhooks", "remove", webhook_id]).exit_code == 0
    gone = runner.invoke(cli, ["webhooks", "remove", webhook_id])
    assert gone.exit_code != 0 and "no webhook" in gone.output
    assert runner.invoke(cli, ["webhooks", "list"]).output == "no webhooks\n"
