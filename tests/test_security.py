"""What the owner never allows. Each hostile attempt bypasses the scientist's own checks (it is
sent as raw messages or bytes), is refused with a clear error, and the session still works."""

from __future__ import annotations

import pytest
import torch

import duet as sy
from duet.protocol.frames import encode_frame
from duet.protocol.messages import Call, Delete, Get, Put
from duet.runtime import run


def raw_call(scientist, op, *, target=None, args=(), result=None):
    """Send a Call exactly as a hostile peer would: no allowlist check on this side."""
    client = scientist.client
    owned = result is None  # a pointer to someone else's id must not free it when dropped
    result = result or client.new_id()
    client.enqueue(
        lambda enc: Call(op=op, target=target, args=[enc.encode(a) for a in args], result=result)
    )
    return client.pointer(result, None, {}, owned=owned)


def still_works(scientist):
    assert torch.equal((torch.ones(2).send(scientist) + 1).get(), torch.full((2,), 2.0))


@pytest.mark.parametrize(
    "op, args",
    [
        ("torch.load", ["/etc/passwd"]),
        ("torch.save", [1, "/tmp/x"]),
        ("torch.from_file", ["/etc/passwd"]),
        ("os.system", ["echo pwned"]),
        ("builtins.eval", ["1+1"]),
        ("builtins.__import__", ["os"]),
        ("torch.Tensor.__reduce__", []),
        ("torch.nn.Module.__subclasses__", []),
    ],
)
def test_functions_off_the_allowlist_are_refused(pair, op, args):
    _, scientist = pair
    ptr = raw_call(scientist, op, args=args)
    with pytest.raises(sy.NotAllowed, match="not on the allowlist"):
        ptr.get()
    still_works(scientist)


@pytest.mark.parametrize("name", ["__class__", "__subclasses__", "__globals__", "__reduce__",
                                  "__reduce_ex__", "__dict__", "__getattribute__", "data", "storage"])  # fmt: skip
def test_dunder_escapes_on_objects_are_refused(pair, name):
    _, scientist = pair
    x = torch.ones(2).send(scientist)
    with pytest.raises(sy.NotAllowed):
        raw_call(scientist, name, target=x.id).get()
    with pytest.raises(sy.NotAllowed):
        raw_call(scientist, name, target=scientist.python.Float(1.0).id).get()
    still_works(scientist)


def test_a_remote_model_member_lookup_cannot_reach_python_internals(pair):
    _, scientist = pair
    model = torch.nn.Linear(2, 2).send(scientist)
    for name in ("__class__", "__dict__", "forward", "_modules"):
        with pytest.raises(sy.RemoteError, match="no layer, parameter or buffer"):
            model.member(name).get()
    assert model.member("weight").shape.get() == torch.Size([2, 2])


def test_deleting_or_overwriting_the_owners_objects_is_refused(pair):
    owner, scientist = pair
    entry = torch.arange(3).send(owner, tags=["data"])
    client = scientist.client
    client.enqueue(lambda enc: Delete(ids=[entry.id]))
    client.enqueue(lambda enc: Put(id=entry.id, value=enc.encode(torch.zeros(3))))
    raw_call(scientist, "torch.zeros", args=[3], result=entry.id)
    scientist.sync(timeout_secs=10)
    assert torch.equal(owner.store[0].value, torch.arange(3))
    assert owner.store[0] is entry
    messages = [f.message for f in client.notices]
    assert any("not yours to delete" in m for m in messages)
    assert sum("already in use" in m for m in messages) == 2  # the Put and the Call
    still_works(scientist)


def test_reusing_one_of_the_scientists_own_ids_is_refused(pair):
    _, scientist = pair
    first = torch.ones(1).send(scientist)
    raw_call(scientist, "torch.zeros", args=[5], result=first.id)
    assert torch.equal(first.get(), torch.ones(1))


@pytest.mark.parametrize(
    "frame",
    [b"", b"garbage", b"DU\x01\x00" + b"\xff" * 8, encode_frame(b"not json"),
     encode_frame(b'[{"k": "call"}]'), encode_frame(b'[{"k": "hello", "role": "owner"}]'),
     b"DU\x09\x00\x00\x00\x00\x00\x00\x00\x00\x00"],
    ids=["empty", "garbage", "truncated", "bad-json", "missing-fields", "bad-hello", "wrong-version"],
)  # fmt: skip
def test_malformed_frames_are_refused_and_the_owner_serves_on(pair, frame):
    _, scientist = pair
    run(scientist.connection.channel.send(frame), timeout_secs=5, what="raw send")
    scientist.sync(timeout_secs=10)
    still_works(scientist)


def test_oversized_frames_are_refused():
    owner, scientist = sy.duet_pair()
    try:
        owner.connection.max_frame_bytes = 10_000
        big = torch.zeros(100_000).send(scientist)
        scientist.sync(timeout_secs=10)
        with pytest.raises(sy.UsageError, match="does not exist"):
            big.get()
        still_works(scientist)
    finally:
        scientist.close()
        owner.close()


def test_hostile_tensor_metadata_is_refused(pair):
    _, scientist = pair
    client = scientist.client
    object_id = client.new_id()
    client.enqueue(
        lambda enc: Put(
            id=object_id, value={"$": "tensor", "dtype": "float32", "shape": [10**9], "buf": 0}
        )
    )
    ptr = client.pointer(object_id, "Tensor", {}, owned=True)
    with pytest.raises(sy.ProtocolError, match="buffer index 0 is out of range"):
        ptr.get()
    assert object_id in client.failures and client.failures[object_id].code == "protocol_error"
    still_works(scientist)


def test_storage_quota_is_a_clear_error_and_owner_data_is_untouched():
    owner, scientist = sy.duet_pair(max_bytes=10_000, max_objects=20)
    try:
        entry = torch.arange(5).send(owner)
        with pytest.raises(sy.QuotaExceeded, match="nothing was sent"):  # told by the owner's Hello
            torch.zeros(5000).send(scientist)  # 20 kB > 10 kB
        made = scientist.torch.zeros(5000)  # made on the owner's side: refused there
        with pytest.raises(sy.QuotaExceeded, match="10,000 bytes per scientist"):
            made.get()
        keep = [scientist.python.Int(i) for i in range(25)]
        with pytest.raises(sy.QuotaExceeded, match="20 objects"):
            (keep[-1] + 1).get()
        assert torch.equal(owner.store[0].value, torch.arange(5)) and owner.store[0] is entry
        del keep
        import gc

        gc.collect()
        scientist.sync(timeout_secs=10)
        still_works(scientist)
    finally:
        scientist.close()
        owner.close()


def test_getting_an_unlisted_object_is_like_getting_nothing(pair):
    owner, scientist = pair
    hidden = torch.ones(2).send(owner, pointable=False)
    client = scientist.client
    reply, _ = client.request(lambda rid: Get(rid=rid, id=hidden.id, request=True, name="x"),
                              timeout_secs=10, what="get")  # fmt: skip
    assert reply.status == "error" and "does not exist" in reply.error.message
    assert len(owner.requests.history) == 0


def test_data_loader_refuses_workers_and_custom_code(pair):
    _, scientist = pair
    rt = scientist.torch
    dataset = rt.utils.data.TensorDataset(rt.ones(4, 1))
    for kwargs in ({"num_workers": 2}, {"collate_fn": None}, {"worker_init_fn": None}):
        with pytest.raises(sy.NotAllowed):
            rt.utils.data.DataLoader(dataset, **kwargs).get()
    still_works(scientist)


def test_out_arguments_cannot_write_into_other_objects(pair):
    owner, scientist = pair
    private = scientist.store[torch.ones(3).send(owner).id]
    mine = torch.zeros(3).send(scientist)
    with pytest.raises(sy.NotAllowed, match="'out'"):
        scientist.torch.add(private, 1, out=mine)  # refused here, nothing sent
    result = scientist.client.new_id()
    scientist.client.enqueue(
        lambda enc: Call(
            op="torch.add",
            args=[enc.encode(private), 1],
            kwargs={"out": enc.encode(mine)},
            result=result,
        )
    )
    forced = scientist.client.pointer(result, None, {}, owned=True)
    # refused by the owner when forced; the refusal of an op on private data is private too
    with pytest.raises(sy.PermissionDenied):
        forced.get()
    owner.requests.add_handler(tags=["add"], derived_inputs=True, action="accept")
    with pytest.raises(sy.NotAllowed, match="'out'"):
        forced.get(request_block=True, name="why", timeout_secs=10)
    assert torch.equal(mine.get(), torch.zeros(3))


def test_mutating_own_objects_with_private_data_makes_them_private(pair):
    owner, scientist = pair
    private = scientist.store[torch.tensor([5.0, 6.0]).send(owner).id]
    mine = torch.zeros(2).send(scientist)
    mine.add_(private)
    with pytest.raises(sy.PermissionDenied):
        mine.get()
    w = torch.ones(2, requires_grad=True).send(scientist)
    (w * private).sum().backward()
    with pytest.raises(sy.PermissionDenied):
        w.grad.get()
    with pytest.raises(sy.PermissionDenied):
        w.get()
    model = torch.nn.Linear(2, 1).send(scientist)
    opt = scientist.torch.optim.SGD(model.parameters(), lr=0.1)
    assert model.get() is not None  # untouched by private data: the scientist's own
    model(private.view(1, 2)).sum().backward()
    opt.step()
    with pytest.raises(sy.PermissionDenied):
        model.get()


def test_objects_of_unknown_type_have_no_remote_methods(pair):
    owner, scientist = pair
    generator_ptr = raw_call(scientist, "torch.Generator")  # not allowlisted: a failure entry
    with pytest.raises(sy.NotAllowed):
        generator_ptr.get()
    # an owner object of a type outside every table cannot be driven by guessing a table
    entry = owner.publish(object(), tags=["odd"])
    attempt = raw_call(scientist, "update", target=entry.id, args=[{"$": "dict", "v": []}])
    with pytest.raises(sy.PermissionDenied):  # about the owner's object: private
        attempt.get()
    handle = attempt.request(name="why")
    request = owner.requests.wait_for_request(timeout_secs=10)
    assert request.tags == ["odd"] and request.kind == "error"
    request.accept()  # an object of unknown kind matches no tag handler: by hand only
    with pytest.raises(sy.NotAllowed, match="no remote methods"):
        handle.wait(timeout_secs=10)
    still_works(scientist)


def test_a_scientist_ignoring_the_action_window_is_disconnected_not_obeyed():
    owner, scientist = sy.duet_pair()
    try:
        entry = torch.arange(3).send(owner)
        owner.link().service.max_backlog = 50
        scientist.client._in_pace = True  # a hostile client that never waits
        x = scientist.torch.zeros(1)
        with pytest.raises(sy.ConnectionLost, match="flooding"):
            for _ in range(100_000):
                x = x + 1
            scientist.sync(timeout_secs=30)
        scientist.wait_closed(timeout_secs=30)
        assert not owner.connected and owner.store[0] is entry
    finally:
        scientist.close()
        owner.close()


def test_an_owner_worker_that_dies_closes_the_session_with_the_reason():
    owner, scientist = sy.duet_pair()
    try:
        service = owner.link().service

        def crash(messages, buffers):  # something no per-message handler catches
            raise SystemExit("simulated")

        service._run_frame = crash
        with pytest.raises(sy.ConnectionLost, match="worker stopped"):
            scientist.sync(timeout_secs=10)
    finally:
        scientist.close()
        owner.close()


def test_an_owner_busy_with_one_long_call_says_so(monkeypatch):
    import dataclasses
    import logging
    import threading

    import duet.sessions.owner as node_module
    from duet.protocol import allowlist

    monkeypatch.setattr(node_module, "WATCH_SECS", 0.05)
    monkeypatch.setattr(node_module, "BUSY_NOTICE_SECS", 0.1)
    release = threading.Event()
    told = threading.Event()

    def slow_abs(tensor):  # an op that runs until the test lets it finish
        assert release.wait(30)
        return tensor.abs()

    op = allowlist.TABLES["Tensor"]["abs"]
    monkeypatch.setitem(allowlist.TABLES["Tensor"], "abs", dataclasses.replace(op, impl=slow_abs))

    class Seen(logging.Handler):
        def emit(self, record):
            if "has been running" in record.getMessage():
                told.set()

    seen = Seen()
    logging.getLogger("duet.scientist.client").addHandler(seen)
    owner, scientist = sy.duet_pair()
    try:
        result = torch.ones(2).send(scientist).abs()
        scientist.client.flush()
        assert told.wait(30)  # the scientist hears that the owner is busy, and with what
        assert any(n.code == "owner_busy" and n.op == "abs" for n in scientist.client.notices)
        release.set()
        assert torch.equal(result.get(timeout_secs=30), torch.ones(2))
    finally:
        release.set()
        logging.getLogger("duet.scientist.client").removeHandler(seen)
        scientist.close()
        owner.close()
