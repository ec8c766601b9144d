"""The dashboard's trust rules: Host check, security headers, the token, unknown cursors.

Every server here shows a recorded event log (no Ray cluster) and listens on
127.0.0.1.  The non-local cases build their server for ``0.0.0.0`` (which
decides the token and the Host rule) and then bind it to 127.0.0.1, so the
test opens no port to the network.
"""

from __future__ import annotations

import logging
import socket

import httpx
import pytest

from raydask.dashboard.server import DashboardServer, host_names, is_loopback
from raydask.dashboard.source import ClientSource
from raydask.events import EventLog, TaskRecord


def _log(prefix="inc", n=3):
    log = EventLog()
    for i in range(n):
        log.submitted(f"{prefix}-{i}", (f"{prefix}-{i - 1}",) if i else ())
        log.finished(f"{prefix}-{i}", TaskRecord("int", 28, 1.0 + i, 1.5 + i, "node-a", 7))
    return log


def _server(address="127.0.0.1:0", log=None, loopback_only=True, **kwargs):
    server = DashboardServer(None, address, source=ClientSource(log or _log(), workers=lambda: []), **kwargs)
    if loopback_only:
        server.host = "127.0.0.1"  # keep the rules chosen for `address`, listen on loopback only
    server.start()
    return server


@pytest.fixture
def served(request):
    servers = []

    def make(*args, **kwargs):
        servers.append(_server(*args, **kwargs))
        return servers[-1]

    yield make
    for s in servers:
        s.stop()


def _base(server):
    return f"http://127.0.0.1:{server.port}"


# -- Host header (DNS rebinding) ----------------------------------------------------------
@pytest.mark.parametrize("path", ["/status", "/graph", "/api/graph", "/api/tasks", "/static/dashboard.js", "/nowhere"])
def test_a_foreign_host_header_is_refused_with_its_name(served, path):
    server = served()
    r = httpx.get(_base(server) + path, headers={"Host": f"rebind.attacker.example:{server.port}"})
    assert r.status_code == 400
    assert "'rebind.attacker.example:" in r.text and r.text.count("\n") == 1
    assert "inc-0" not in r.text


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "LocalHost.", "localhost:1", "127.0.0.1:65535",
                                  "[::1]:8787"])
def test_loopback_names_with_any_port_are_served(served, host):
    server = served()
    assert httpx.get(_base(server) + "/api/graph", headers={"Host": host}).status_code == 200


def test_allowed_hosts_adds_names_and_star_allows_any(served):
    named = served(allowed_hosts=["dash.example.org"])
    assert httpx.get(_base(named) + "/status", headers={"Host": "dash.example.org:80"}).status_code == 200
    assert httpx.get(_base(named) + "/status", headers={"Host": "localhost"}).status_code == 200
    assert httpx.get(_base(named) + "/status", headers={"Host": "other.example.org"}).status_code == 400
    anything = served(allowed_hosts=["*"])
    assert httpx.get(_base(anything) + "/status", headers={"Host": "other.example.org"}).status_code == 200


@pytest.mark.parametrize("bad", ["localhost", 3, [b"localhost"]])
def test_allowed_hosts_must_be_a_list_of_names(bad):
    with pytest.raises(TypeError, match="allowed_hosts"):
        DashboardServer(None, "127.0.0.1:0", source=ClientSource(_log(), workers=lambda: []), allowed_hosts=bad)


def test_which_hosts_are_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.8.9.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.0.2.7")
    assert {"localhost", "127.0.0.1", "[::1]"} <= host_names("127.0.0.1")
    machine = host_names("0.0.0.0")
    assert socket.gethostname().lower() in machine and "0.0.0.0" not in machine


# -- security headers ---------------------------------------------------------------------
@pytest.mark.parametrize("path, status", [
    ("/status", 200), ("/graph", 200), ("/workers", 200), ("/api/graph", 200), ("/api/tasks", 200),
    ("/api/progress", 200), ("/static/graph.js", 200), ("/static/nothing.js", 404), ("/", 307),
    ("/api/graph?since=-1", 400),
])
def test_every_response_carries_the_security_headers_and_no_server_banner(served, path, status):
    server = served()
    r = httpx.get(_base(server) + path)
    assert r.status_code == status
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp.split(
        "script-src")[1].split(";")[0]
    assert "server" not in r.headers
    assert len(r.headers.get_list("content-security-policy")) == 1


def test_refusals_carry_the_security_headers_too(served):
    server = served(token="s3cret")
    for r in (httpx.get(_base(server) + "/status"), httpx.get(_base(server) + "/status", headers={"Host": "evil"})):
        assert r.status_code in (400, 403)
        assert r.headers["x-frame-options"] == "DENY" and "content-security-policy" in r.headers
        assert "server" not in r.headers


def test_only_the_plotly_pages_may_eval(served):
    server = served()
    csp = {p: httpx.get(_base(server) + p).headers["content-security-policy"] for p in ("/status", "/graph",
                                                                                       "/workers", "/api/graph")}
    assert "'unsafe-eval'" in csp["/status"] and "'unsafe-eval'" in csp["/graph"]
    assert "'unsafe-eval'" not in csp["/workers"] and "'unsafe-eval'" not in csp["/api/graph"]


# -- token --------------------------------------------------------------------------------
def test_a_non_local_bind_warns_and_requires_a_generated_token(served, caplog):
    with caplog.at_level(logging.WARNING, logger="raydask.dashboard"):
        server = served("0.0.0.0:0")
    assert any("0.0.0.0" in r.getMessage() and "other machines" in r.getMessage() for r in caplog.records)
    assert server.token and len(server.token) >= 32
    assert server.link.endswith(f"/status?token={server.token}")
    assert server.token not in repr(server)
    base = _base(server)
    assert httpx.get(base + "/status").status_code == 403
    assert httpx.get(base + "/api/graph").status_code == 403
    assert httpx.get(base + "/api/graph", params={"token": "wrong"}).status_code == 403
    r = httpx.get(server.link)
    assert r.status_code == 200 and "<html" in r.text
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"raydask-dashboard-{server.port}={server.token};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    with httpx.Client(base_url=base) as browser:  # keeps the cookie, as the page's fetches do
        assert browser.get(server.link).status_code == 200
        assert browser.get("/api/graph").status_code == 200
        assert browser.get("/static/graph.js").status_code == 200
    forged = {"Cookie": f"raydask-dashboard-{server.port}=wrong"}
    assert httpx.get(base + "/api/graph", headers=forged).status_code == 403


def test_a_non_local_bind_with_a_token_serves_any_host_name(served):
    # the token is the protection there: a rebinding page has neither it nor the cookie
    server = served("0.0.0.0:0")
    assert httpx.get(_base(server) + "/api/graph", headers={"Host": "evil.example"}).status_code == 403
    r = httpx.get(_base(server) + "/api/graph", params={"token": server.token}, headers={"Host": "dash.example.org"})
    assert r.status_code == 200


def test_token_false_off_loopback_keeps_the_host_check_to_the_machines_names(served, caplog):
    with caplog.at_level(logging.WARNING, logger="raydask.dashboard"):
        server = served("0.0.0.0:0", token=False)
    assert server.token is None and "?token" not in server.link
    assert any("token=False" in r.getMessage() for r in caplog.records)
    base = _base(server)
    assert httpx.get(base + "/api/graph", headers={"Host": "evil.example"}).status_code == 400
    assert httpx.get(base + "/api/graph", headers={"Host": f"{socket.gethostname()}:9"}).status_code == 200
    assert httpx.get(base + "/api/graph").status_code == 200


def test_a_loopback_bind_has_no_token_unless_asked(served):
    assert served().token is None
    plain = served(token=True)
    assert plain.token and httpx.get(_base(plain) + "/status").status_code == 403
    given = served(token="my-token_1.2~")
    assert given.link.endswith("?token=my-token_1.2~")
    assert httpx.get(_base(given) + "/status", params={"token": "my-token_1.2~"}).status_code == 200


@pytest.mark.parametrize("token, error", [(3, TypeError), (b"x", TypeError), ("", ValueError),
                                          ("a b", ValueError), ("a;b", ValueError), ("é", ValueError)])
def test_bad_tokens_are_refused(token, error):
    with pytest.raises(error, match="token"):
        DashboardServer(None, "127.0.0.1:0", source=ClientSource(_log(), workers=lambda: []), token=token)


# -- unknown cursors ----------------------------------------------------------------------
@pytest.mark.parametrize("since", ["99999999999999999999", str(2**63), str(2**64 + 1), "1" + "0" * 300, "7"])
@pytest.mark.parametrize("api", ["/api/graph", "/api/tasks"])
def test_a_cursor_the_server_never_issued_gets_the_whole_picture_with_reset(served, api, since):
    server = served()
    whole = httpx.get(_base(server) + api).json()
    assert whole["cursor"] < int(since)
    r = httpx.get(_base(server) + api, params={"since": since})
    assert r.status_code == 200
    reply = r.json()
    assert reply["reset"] is True and reply["cursor"] == whole["cursor"]
    items = "nodes" if api == "/api/graph" else "tasks"
    assert len(reply[items]) == len(whole[items]) == 3
    assert "reset" not in httpx.get(_base(server) + api, params={"since": whole["cursor"]}).json()


def test_a_cursor_of_another_session_gets_the_whole_picture_with_reset(served):
    old, new = served(log=_log("old", 5)), served(log=_log("new", 2))
    first = httpx.get(_base(old) + "/api/graph").json()
    assert first["session"] != httpx.get(_base(new) + "/api/graph").json()["session"]
    # a page that outlived `old` asks `new` with old's cursor and session
    reply = httpx.get(_base(new) + "/api/graph", params={"since": 1, "session": first["session"]}).json()
    assert reply["reset"] is True and {n["key"] for n in reply["nodes"]} == {"new-0", "new-1"}
    same = httpx.get(_base(old) + "/api/graph", params={"since": first["cursor"], "session": first["session"]})
    assert "reset" not in same.json() and same.json()["nodes"] == []


@pytest.mark.parametrize("since, status", [("-1", 400), ("1" * 5000, 422), ("abc", 422), ("1e3", 422)])
def test_malformed_cursors_are_client_errors_not_500(served, since, status):
    server = served()
    for api in ("/api/graph", "/api/tasks"):
        assert httpx.get(_base(server) + api, params={"since": since}).status_code == status


def test_a_failing_endpoint_answers_500_with_the_security_headers(served, caplog):
    server = served()

    def broken(since=0):
        raise RuntimeError("boom")

    server.source.graph = broken
    with caplog.at_level(logging.ERROR, logger="raydask.dashboard"):
        r = httpx.get(_base(server) + "/api/graph")
    assert r.status_code == 500 and "boom" not in r.text
    assert r.headers["x-frame-options"] == "DENY" and "content-security-policy" in r.headers
    assert any("/api/graph" in rec.getMessage() for rec in caplog.records)
