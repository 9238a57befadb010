"""Trigger names of the four vocabularies, as contract §5 tabulates them."""

from __future__ import annotations

import pytest

from services.common.triggers import expand, unknown_triggers

TABLE = [
    ("message", {"message.received", "message.sent", "message.internal"}),
    ("message:appUser", {"message.received"}),
    ("message:appMaker", {"message.sent", "message.internal"}),
    ("message_created", {"message.received", "message.sent", "message.internal"}),
    ("MESSAGE_DELIVERY", {"message.delivered", "message.delivery_failed"}),
    ("delivery:failure", {"message.delivery_failed"}),
    ("MESSAGE_INBOUND", {"message.received"}),
    ("user.created", {"contact.created"}),
    ("merge:appUser", {"contact.merged"}),
    ("conversation_typing_off", {"conversation.typing_off"}),
    ("webwidget_triggered", {"widget.opened"}),
    ("OPT_OUT", {"contact.opted_out"}),
    ("payment.succeeded", {"payment.succeeded"}),
    ("message.received", {"message.received"}),  # canonical, and nativeMsg's name
    ("contact.*", {"contact.created", "contact.updated", "contact.deleted", "contact.merged",
                   "contact.identities_duplicated", "contact.opted_in", "contact.opted_out"}),
]


@pytest.mark.parametrize(("trigger", "types"), TABLE)
def test_trigger_covers(trigger: str, types: set[str]) -> None:
    assert expand(trigger) == types


def test_star_covers_everything_but_the_test_event() -> None:
    covered = expand("*")
    assert covered is not None
    assert "webhook.test" not in covered
    assert {"message.received", "payment.succeeded", "record.notification"} <= covered


@pytest.mark.parametrize("name", ["UNSPECIFIED_TRIGGER", "nope", "webhook.test", "nothing.*",
                                  "MESSAGE", "", "*.*"])
def test_unknown_names(name: str) -> None:
    assert unknown_triggers(["message", name]) == [name]
