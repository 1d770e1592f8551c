"""redis-py against a Selfman cluster: run by systems/store/tests/real_clients.rs with the
venv's python (./test.sh creates it). Argument: the nodes' Redis addresses, HOST:PORT each.
Exits non-zero, saying what differed, on any unexpected reply."""
import sys
import threading

import redis


def main(addrs):
    clients = []
    for a in addrs:
        host, port = a.rsplit(":", 1)
        clients.append(redis.Redis(host=host, port=int(port), socket_timeout=60))
    a, b = clients[0], clients[-1]
    assert a.ping() is True
    assert a.set("py:k", "v") is True
    assert b.get("py:k") == b"v", b.get("py:k")
    assert b.incr("py:n") == 1 and a.incrby("py:n", 41) == 42
    assert a.mset({"py:x": "1", "py:y": "2"}) is True
    assert b.mget("py:x", "py:y", "py:none") == [b"1", b"2", None]
    assert a.sadd("py:s", "a", "b", "a") == 2
    assert b.smembers("py:s") == {b"a", b"b"}
    assert b.delete("py:x", "py:y", "py:none") == 2
    try:
        a.get("py:s")
        raise AssertionError("GET of a set answered")
    except redis.exceptions.ResponseError as e:
        assert str(e).startswith("WRONGTYPE"), e

    # redis-py's transaction helper: WATCH, read, MULTI, write, EXEC, retried on WatchError.
    a.set("py:acct:a", 100)
    a.set("py:acct:b", 100)
    retries = [0]

    def transfer(client, n):
        for _ in range(n):
            def move(pipe):
                x = int(pipe.get("py:acct:a"))
                y = int(pipe.get("py:acct:b"))
                pipe.multi()
                pipe.set("py:acct:a", x - 1)
                pipe.set("py:acct:b", y + 1)
            client.transaction(move, "py:acct:a", "py:acct:b")

    threads = [threading.Thread(target=transfer, args=(c, 10)) for c in clients for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    moved = 10 * len(threads)
    got = (int(b.get("py:acct:a")), int(b.get("py:acct:b")))
    assert got == (100 - moved, 100 + moved), got

    # A pipeline of plain commands (not a transaction): replies in order.
    p = a.pipeline(transaction=False)
    for i in range(50):
        p.set(f"py:p{i}", i)
        p.get(f"py:p{i}")
    replies = p.execute()
    assert replies == [x for i in range(50) for x in (True, str(i).encode())], replies[:6]

    # A transaction pipeline: MULTI/EXEC of several keys.
    p = b.pipeline(transaction=True)
    p.incr("py:t1").incr("py:t2").get("py:t1")
    assert p.execute() == [1, 1, b"1"]
    print("redis-py: all checks passed against", len(addrs), "nodes;", moved, "transfers")


if __name__ == "__main__":
    main(sys.argv[1:])
