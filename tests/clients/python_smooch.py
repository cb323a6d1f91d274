"""Drives the suite through PyPI python-smooch 1.0.4, unchanged, with its public functions
only. Run by tests/tests/e2e/clients.rs; prints `OK <step>` per step and exits non-zero with
`FAIL <step> <detail>` on the first failure.

python-smooch always calls https://api.smooch.io/v1 (operators pointed that name at their
server); here a transport adapter on its requests session sends those calls to BASE
instead, as a hosts entry and a proxy would. Environment: BASE, KEY_ID, SECRET (a key of
the app), OTHER_KEY_ID, OTHER_SECRET (another app's).
"""
import os
import sys
import time
import traceback

import jwt
import requests

os.environ["SMOOCH_KEY_ID"] = os.environ["KEY_ID"]
os.environ["SMOOCH_SECRET"] = os.environ["SECRET"]

import smooch  # noqa: E402 (reads the key at import)
from smooch import authentication, endpoint, exceptions  # noqa: E402

BASE = os.environ["BASE"].rstrip("/")
HOSTED = "https://api.smooch.io/"


class ToSuite(requests.adapters.HTTPAdapter):
    """Sends what python-smooch addresses to the hosted API to the suite."""

    def send(self, request, **kwargs):
        request.url = BASE + "/" + request.url[len(HOSTED):]
        return super().send(request, **kwargs)


endpoint.session.mount(HOSTED, ToSuite())
# A fresh connection per call: a pooled one the server closes as it is reused would fail a
# step for the transport's sake, not the API's.
endpoint.session.headers["Connection"] = "close"
RUN = format(int(time.time() * 1000), "x")


def check(condition, detail):
    if not condition:
        raise AssertionError(detail)


def step(name, body):
    try:
        body()
    except Exception:  # noqa: BLE001 (every failure is reported the same way)
        print("FAIL {} {}".format(name, traceback.format_exc()))
        sys.exit(1)
    print("OK {}".format(name))


def refused(error, call):
    try:
        call()
    except error:
        return
    raise AssertionError("expected {}".format(error.__name__))


user_id = "py-{}@example.com".format(RUN)
state = {}


def init_and_users():
    res = smooch.init_user("device-" + RUN, user_id).json()
    check(res["appUser"]["userId"] == user_id, res)
    state["id"] = res["appUser"]["_id"]
    got = smooch.get_user(user_id).json()
    check(got["appUser"]["_id"] == state["id"], got)
    updated = smooch.update_user(user_id, {"givenName": "Grace"}).json()
    check(updated["appUser"]["givenName"] == "Grace", updated)
    pre = smooch.pre_create_user(user_id + "-pre").json()
    check(pre["appUser"]["userId"] == user_id + "-pre", pre)
    refused(exceptions.ConflictError, lambda: smooch.pre_create_user(user_id + "-pre"))


def anonymous():
    res = smooch.init_user("anon-" + RUN).json()
    check(res["appUser"]["_id"] and "userId" not in res["appUser"], res)
    check(res["appUser"]["devices"][0]["platform"] == "other", res)


def messages():
    mine = smooch.send_message(user_id, "hello", sent_by_maker=False).json()
    check(mine["message"]["role"] == "appUser", mine)
    smooch.send_message(user_id, "hi there")
    smooch.send_links(user_id, "links", [("Docs", "https://example.com/docs")])
    smooch.send_postbacks(user_id, "choose", [("Yes", "YES")])
    smooch.send_buttons(user_id, "buttons", [("Maybe", "postback", "MAYBE")])
    smooch.request_payment(user_id, "pay", [("Buy", 500)])
    conv = smooch.get_conversation(user_id).json()["conversation"]
    texts = [m["text"] for m in conv["messages"]]
    check(texts == ["hello", "hi there", "links", "choose", "buttons", "pay"], texts)
    kinds = [a["type"] for m in conv["messages"] for a in m.get("actions", [])]
    check(kinds == ["link", "postback", "postback", "buy"], kinds)
    buy = conv["messages"][-1]["actions"][0]
    check(buy["amount"] == 500 and buy["_id"], buy)
    check(conv["unreadCount"] == 5, conv)
    refused(exceptions.BadRequestError, lambda: smooch.send_links(user_id, "bad", [("Docs", "not a uri")]))


def as_user():
    # The user's own JWT, minted by python-smooch's authentication.jwt_for_user.
    endpoint.JWT_TOKEN = authentication.jwt_for_user(user_id)
    try:
        got = smooch.get_user(user_id).json()
        check(got["appUser"]["_id"] == state["id"], got)
        mine = smooch.send_message(user_id, "from me", sent_by_maker=False).json()
        check(mine["message"]["text"] == "from me" and mine["message"]["role"] == "appUser", mine)
        refused(exceptions.ForbiddenRequestError, lambda: smooch.send_message(user_id, "maker?"))
        refused(exceptions.ForbiddenRequestError, lambda: smooch.get_user(user_id + "-pre"))
        refused(exceptions.ForbiddenRequestError, smooch.list_webhooks)
    finally:
        endpoint.JWT_TOKEN = authentication.JWT_TOKEN


def webhooks():
    target = "https://example.com/py-" + RUN
    created = smooch.create_webhook(target, ["message:appUser", "postback"]).json()["webhook"]
    check(created["triggers"] == ["message:appUser", "postback"], created)
    listed = smooch.list_webhooks().json()["webhooks"]
    check(any(w["_id"] == created["_id"] for w in listed), listed)
    got = smooch.get_webhook(created["_id"]).json()["webhook"]
    check(got["target"] == target, got)
    moved = smooch.update_webhook(created["_id"], target + "/moved").json()["webhook"]
    check(moved["target"] == target + "/moved", moved)
    check(moved["triggers"] == ["message:appUser", "postback"], moved)
    retriggered = smooch.update_webhook(created["_id"], target, ["message"]).json()["webhook"]
    check(retriggered["triggers"] == ["message"] and retriggered["target"] == target, retriggered)
    smooch.delete_webhook(created["_id"])
    refused(exceptions.NotFoundError, lambda: smooch.get_webhook(created["_id"]))


def webhook_helpers():
    target = "https://example.com/ensure-" + RUN
    hook_id, secret = smooch.ensure_webhook_exist(target, "message:appMaker")
    check(hook_id and secret, (hook_id, secret))
    again = smooch.ensure_webhook_exist(target, "message:appMaker")
    check(again == (hook_id, secret), again)
    smooch.ensure_webhook_exist(target + "/moved", "message:appMaker")
    moved = smooch.get_webhook(hook_id).json()["webhook"]
    check(moved["target"] == target + "/moved", moved)
    smooch.create_webhook(target + "/second")
    check(len(smooch.list_webhooks().json()["webhooks"]) == 2, "two webhooks")
    deleted = smooch.delete_all_webhooks()
    check(len(deleted) == 2 and all(r.status_code == 200 for r in deleted), deleted)
    check(smooch.list_webhooks().json()["webhooks"] == [], "no webhook left")


def other_app():
    # Another app's key: the same calls find nothing of this app.
    endpoint.JWT_TOKEN = jwt.encode(
        {"scope": "app"}, os.environ["OTHER_SECRET"], algorithm="HS256",
        headers={"kid": os.environ["OTHER_KEY_ID"]},
    ).decode("utf-8")
    refused(exceptions.NotFoundError, lambda: smooch.get_user(user_id))
    refused(exceptions.NotFoundError, lambda: smooch.get_conversation(user_id))


step("init_user, get_user, update_user, pre_create_user", init_and_users)
step("init_user without a userId", anonymous)
step("send_message, links, postbacks, buttons, payment; get_conversation", messages)
step("the user's own JWT (jwt_for_user)", as_user)
step("webhooks with triggers", webhooks)
step("ensure_webhook_exist, delete_all_webhooks", webhook_helpers)
step("another app's key is refused", other_app)
print("DONE")
