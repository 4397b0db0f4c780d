"""LangGraph's figures for the same cases as `benches/durability.rs`, run by that bench when
`LANGGRAPH_PYTHON` names a Python with langgraph==1.2.22, langgraph-checkpoint-sqlite and
langgraph-checkpoint-postgres installed (or run by hand: `python langgraph_durability.py --help`).

Cases: a 1,000-superstep `{count, log}` loop with a conditional edge back, and an 8-way fan-out +
join repeated 100 times; checkpointers none, memory, SQLite, Postgres; durability "async" and "sync".
1 warm-up + N timed runs each (fresh thread per run); prints one JSON object per case on stdout:
{"case", "store", "durability", "median_us", "unit", "checkpoints"}.
"""

import argparse
import json
import operator
import sqlite3
import statistics
import sys
import time
import uuid
from typing import Annotated, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph


class S(TypedDict):
    count: Annotated[int, operator.add]
    log: Annotated[list, operator.add]


def loop_graph(cp, steps):
    g = StateGraph(S)
    g.add_node("step", lambda s: {"count": 1, "log": [f"s{s['count']}"]})
    g.add_edge(START, "step")
    g.add_conditional_edges(
        "step", lambda s: "step" if s["count"] < steps else END, ["step", END]
    )
    return g.compile(checkpointer=cp)


def fanout_graph(cp, width, iterations):
    g = StateGraph(S)
    g.add_node("fan", lambda s: {})
    for i in range(width):
        g.add_node(f"w{i}", lambda s, i=i: {"count": 1})
        g.add_edge("fan", f"w{i}")
    g.add_node("join", lambda s: {"log": ["j"]})
    g.add_edge([f"w{i}" for i in range(width)], "join")
    g.add_edge(START, "fan")
    g.add_conditional_edges(
        "join",
        lambda s: "fan" if s["count"] < width * iterations else END,
        ["fan", END],
    )
    return g.compile(checkpointer=cp)


def run_case(graph, cp, durability, units, limit, runs, expect):
    times = []
    counted = None
    for i in range(runs + 1):
        cfg = {
            "configurable": {"thread_id": f"lg-{uuid.uuid4()}"},
            "recursion_limit": limit,
        }
        kwargs = {} if durability is None else {"durability": durability}
        t0 = time.perf_counter()
        out = graph.invoke({"count": 0, "log": []}, cfg, **kwargs)
        dt = time.perf_counter() - t0
        assert out["count"] == expect, out["count"]
        if i > 0:
            times.append(dt)
        if cp is not None and i == 1:
            counted = sum(1 for _ in cp.list(cfg))
    return statistics.median(times) * 1e6 / units, counted


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sqlite", help="SQLite file for the SQLite saver")
    ap.add_argument("--sqlite-synchronous", default="NORMAL")
    ap.add_argument("--pg", help="Postgres URL for the Postgres saver")
    ap.add_argument("--only", default="", help="comma-separated stores to run")
    a = ap.parse_args()

    stores = [("none", None), ("memory", InMemorySaver())]
    closers = []
    if a.sqlite:
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(a.sqlite, check_same_thread=False)
        saver = SqliteSaver(conn)
        saver.setup()
        conn.execute(f"PRAGMA synchronous={a.sqlite_synchronous}")
        stores.append((f"sqlite-{a.sqlite_synchronous.lower()}", saver))
        closers.append(conn.close)
    if a.pg:
        from langgraph.checkpoint.postgres import PostgresSaver

        ctx = PostgresSaver.from_conn_string(a.pg)
        saver = ctx.__enter__()
        saver.setup()
        stores.append(("postgres", saver))
        closers.append(lambda: ctx.__exit__(None, None, None))
    only = [o for o in a.only.split(",") if o]

    for store, cp in stores:
        if only and not any(store.startswith(o) for o in only):
            continue
        for durability in [None] if cp is None else ["async", "sync"]:
            for case in ("loop", "fanout"):
                if case == "loop":
                    g = loop_graph(cp, a.steps)
                    units, limit, expect = a.steps, a.steps + 10, a.steps
                else:
                    g = fanout_graph(cp, a.width, a.iterations)
                    units = a.iterations
                    limit = 3 * a.iterations + 10
                    expect = a.width * a.iterations
                us, counted = run_case(g, cp, durability, units, limit, a.runs, expect)
                print(
                    json.dumps(
                        {
                            "case": case,
                            "store": store,
                            "durability": durability or "-",
                            "median_us": us,
                            "unit": "step" if case == "loop" else "iteration",
                            "checkpoints": counted,
                        }
                    ),
                    flush=True,
                )
    for c in closers:
        c()


if __name__ == "__main__":
    sys.exit(main())
