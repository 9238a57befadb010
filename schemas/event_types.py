"""The event-type table (contract §5): every canonical type and its aliases in the
four seed vocabularies. This is the only copy; matching, validation and
`GET /v1/event-types` all read it."""

from __future__ import annotations

import msgspec

VOCABULARIES = ("smooch", "chatwoot", "sinch", "nativemsg")


class EventType(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    description: str
    smooch: tuple[str, ...] = ()
    chatwoot: tuple[str, ...] = ()
    sinch: tuple[str, ...] = ()
    nativemsg: tuple[str, ...] = ()
    # Delivered only to the webhook it names, never through a trigger.
    reserved: bool = False

    def aliases(self) -> tuple[str, ...]:
        return self.smooch + self.chatwoot + self.sinch + self.nativemsg


def _t(type_: str, description: str, **aliases: tuple[str, ...] | bool) -> EventType:
    return EventType(type=type_, description=description, **aliases)  # type: ignore[arg-type]


EVENT_TYPES: tuple[EventType, ...] = (
    _t("message.received", "A message from the end user.",
       smooch=("message", "message:appUser"), chatwoot=("message_created",),
       sinch=("MESSAGE_INBOUND",), nativemsg=("message.received",)),
    _t("message.sent", "A message from the business.",
       smooch=("message", "message:appMaker"), chatwoot=("message_created",),
       nativemsg=("message.sent",)),
    _t("message.internal", "A whisper or private note, not shown to the end user.",
       smooch=("message", "message:appMaker"), chatwoot=("message_created",)),
    _t("message.submitted", "A message was handed to the channel.",
       sinch=("MESSAGE_SUBMIT",)),
    _t("message.updated", "A message was edited or its status changed.",
       chatwoot=("message_updated",)),
    _t("message.delivered", "The channel confirmed delivery of a message.",
       smooch=("delivery:success",), sinch=("MESSAGE_DELIVERY",)),
    _t("message.delivery_failed", "The channel could not deliver a message.",
       smooch=("delivery:failure",), sinch=("MESSAGE_DELIVERY",)),
    _t("message.redacted", "A message's content was redacted by smart conversations.",
       sinch=("MESSAGE_INBOUND_SMART_CONVERSATION_REDACTION",)),
    _t("conversation.created", "A conversation started.",
       chatwoot=("conversation_created",), sinch=("CONVERSATION_START",)),
    _t("conversation.updated", "Conversation attributes changed (`data.changed_attributes`).",
       chatwoot=("conversation_updated",)),
    _t("conversation.status_changed", "A conversation was opened, resolved or snoozed.",
       chatwoot=("conversation_status_changed",)),
    _t("conversation.read", "The end user read the conversation.",
       smooch=("conversation:read",)),
    _t("conversation.typing_on", "Someone started typing.",
       chatwoot=("conversation_typing_on",)),
    _t("conversation.typing_off", "Someone stopped typing.",
       chatwoot=("conversation_typing_off",)),
    _t("conversation.stopped", "A conversation ended.", sinch=("CONVERSATION_STOP",)),
    _t("conversation.deleted", "A conversation was deleted.", sinch=("CONVERSATION_DELETE",)),
    _t("postback.received", "The end user pressed a postback button.", smooch=("postback",)),
    _t("widget.opened", "The end user opened the web widget.",
       chatwoot=("webwidget_triggered",)),
    _t("contact.created", "A contact was created.",
       sinch=("CONTACT_CREATE",), nativemsg=("user.created",)),
    _t("contact.updated", "A contact was updated.", sinch=("CONTACT_UPDATE",)),
    _t("contact.deleted", "A contact was deleted.", sinch=("CONTACT_DELETE",)),
    _t("contact.merged", "Two contacts were merged.",
       smooch=("merge:appUser",), sinch=("CONTACT_MERGE",)),
    _t("contact.identities_duplicated", "Channel identities were found on two contacts.",
       sinch=("CONTACT_IDENTITIES_DUPLICATION",)),
    _t("contact.opted_in", "A contact opted in.", sinch=("OPT_IN",)),
    _t("contact.opted_out", "A contact opted out.", sinch=("OPT_OUT",)),
    _t("payment.succeeded", "A payment went through.", smooch=("payment:success",)),
    _t("event.received", "A channel event from the end user.", sinch=("EVENT_INBOUND",)),
    _t("event.delivered", "A channel event was delivered.", sinch=("EVENT_DELIVERY",)),
    _t("capability.checked", "A channel capability lookup finished.", sinch=("CAPABILITY",)),
    _t("channel.event", "A channel-specific event.", sinch=("CHANNEL_EVENT",)),
    _t("smart_conversation.analyzed", "Smart-conversation analysis finished.",
       sinch=("SMART_CONVERSATION",)),
    _t("record.notification", "A record notification.", sinch=("RECORD_NOTIFICATION",)),
    _t("message.unsupported", "A message the channel could not represent.",
       sinch=("UNSUPPORTED",)),
    _t("webhook.test", "A test event, sent only to the webhook under test.", reserved=True),
)

WILDCARD = "*"
DEFAULT_TRIGGERS = ("message",)
# Named in the Sinch docs but meaning "no trigger": refused rather than matched.
REJECTED_TRIGGERS = frozenset({"UNSPECIFIED_TRIGGER"})
