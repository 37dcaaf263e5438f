"""Several clients at once (no cross-talk), answers while a job runs, fair queue positions, and
cancellation of queued and running jobs — real server, real Editor, real sockets."""

import threading
import time

import numpy as np
import pytest

from editgan.client import ClientError
from tests.server_fixtures import client, editor, face, make_client, server, tiny_bundle_dir  # noqa: F401

LONG = 1000  # embed steps: far longer than any test waits, so only cancellation ends it


def test_four_clients_25_requests_no_crosstalk(server, make_client):
    clients = [make_client(server.endpoint) for _ in range(4)]
    errors, sessions = [], {}

    def work(k, c):
        try:
            rng = np.random.default_rng(k)
            mine = []
            for i in range(25):
                if i in (0, 12):   # compute jobs (kept few: the worker serializes them)
                    h, w = 8 + k, 9 + i
                    res = c.embed(face(h, w, seed=100 * k + i), steps=1)
                    assert (res["height"], res["width"]) == (h, w), (k, i)
                    assert res["segmentation"].shape == (h, w, 4)
                    mine.append(res["session"])
                elif i % 5 == 4:
                    img = rng.integers(0, 256, (3 + k, 5 + i, 4), dtype=np.uint8)
                    assert np.array_equal(c.echo(img)["image"], img), (k, i)
                else:
                    payload = f"client{k}-req{i}-" + "x" * (k * 10)
                    assert c.ping(payload)["payload"] == payload, (k, i)
            sessions[k] = mine
        except BaseException as e:  # reported in the main thread
            errors.append((k, e))

    threads = [threading.Thread(target=work, args=(k, c)) for k, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    all_ids = [s for k in range(4) for s in sessions[k]]
    assert len(all_ids) == 8 and len(set(all_ids)) == 8


def test_cancel_running_job_and_ping_while_busy(client):
    img = face(16, 16, 7)
    rid = client.submit("embed", {"steps": LONG}, {"image": img})
    seen, state = [], {}

    def on_event(e):
        seen.append(e)
        if e["event"] == "progress" and "pong" not in state:
            t0 = time.monotonic()
            state["pong"] = client.ping("busy?")["payload"]        # answered by the socket loop
            state["ping_s"] = time.monotonic() - t0
            state["cancelled"] = client.cancel(rid)
            state["t_cancel"] = time.monotonic()

    with pytest.raises(ClientError) as e:
        client.wait(rid, on_event)
    assert e.value.code == "cancelled"
    assert state["pong"] == "busy?" and state["ping_s"] < 1.0
    assert state["cancelled"] is True
    assert time.monotonic() - state["t_cancel"] < 5.0
    assert max(ev["step"] for ev in seen if ev["event"] == "progress") < LONG
    assert client.cancel(rid) is False             # already finished
    assert client.cancel("never-sent") is False


def test_cancel_queued_job_and_fair_positions(server, make_client):
    a, b = make_client(server.endpoint), make_client(server.endpoint)
    img = face(12, 12, 8)
    running = a.submit("embed", {"steps": LONG}, {"image": img})
    assert a.next_event(running)["position"] == 0
    while a.next_event(running)["event"] != "progress":   # it is running now
        pass
    queued = [a.submit("embed", {"steps": 1}, {"image": img}) for _ in range(3)]
    assert [a.next_event(rid)["position"] for rid in queued] == [0, 1, 2]
    other = b.submit("embed", {"steps": 1}, {"image": img})
    assert b.next_event(other)["position"] == 1   # B waits behind one of A's jobs, not all of them
    assert b.cancel(queued[0]) is False              # not B's job
    assert a.cancel(queued[1]) is True
    with pytest.raises(ClientError) as e:
        a.wait(queued[1])
    assert e.value.code == "cancelled" and "queued" in e.value.message
    assert a.cancel(running) is True
    with pytest.raises(ClientError) as e:
        a.wait(running)
    assert e.value.code == "cancelled"
    assert a.wait(queued[0])["event"] == "result" and a.wait(queued[2])["event"] == "result"
    assert b.wait(other)["event"] == "result"
