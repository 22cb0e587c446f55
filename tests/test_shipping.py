"""Decorated functions pickle by reference where they import, else by value with their keys."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap
from concurrent.futures import ProcessPoolExecutor

import pytest

from fleche import cache, fleche, wrap_executor
from fleche.shipping import importable

pytest.importorskip("cloudpickle", reason="sending by value needs cloudpickle")


@fleche
def module_level(x):
    return x + 1


def test_an_importable_function_pickles_by_reference():
    assert importable(module_level)
    data = pickle.dumps(module_level)
    assert len(data) < 100
    assert pickle.loads(data) is module_level


def test_a_local_function_pickles_by_value_with_its_key(memory):
    offset = 10

    @fleche(version="3")
    def local(x):
        return x + offset

    assert not importable(local)
    assert local(1) == 11
    data = pickle.dumps(local)
    copy = pickle.loads(data)
    assert copy is not local and copy is pickle.loads(data)  # rebuilt once per process
    assert copy.digest(1) == local.digest(1)
    assert copy.contains(1) and copy(2) == 12 and local.contains(2)


def test_a_local_function_runs_in_a_spawned_worker(tmp_path):
    @fleche
    def triple(x):
        return x * 3, os.getpid()

    spawn = multiprocessing.get_context("spawn")
    with cache(str(tmp_path / "store")):
        with wrap_executor(ProcessPoolExecutor(1, mp_context=spawn)) as pool:
            value, pid = pool.submit(triple, 2).result()
        assert value == 6 and pid != os.getpid()
        assert triple(2) == (6, pid)  # stored by the worker under the key made here


SCRIPT = """
import json
import pickle
import sys

from fleche import fleche


@fleche(version="2", hash_code=True)
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


@fleche
def even(n):
    return True if n == 0 else odd(n - 1)


@fleche
def odd(n):
    return False if n == 0 else even(n - 1)


if __name__ == "__main__":
    if len(sys.argv) > 1:  # the receiving end: a program without these functions
        del fib, even, odd
        fib, even = pickle.loads(bytes.fromhex(sys.stdin.read()))
    else:
        print(pickle.dumps((fib, even)).hex())
    print(json.dumps([fib(12), str(fib.digest(12)), even(7), str(even.digest(7)), fib.__module__]))
"""


def test_a_main_function_is_sent_by_value_to_another_program(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "FLECHE_CACHE": "memory"}

    def run(*args: str, given: str = "") -> list[str]:
        done = subprocess.run(
            [sys.executable, str(script), *args],
            input=given,
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout.splitlines()

    data, sent = run()
    (received,) = run("receive", given=data)
    assert json.loads(received) == json.loads(sent)
    assert json.loads(sent)[:3] == [144, json.loads(sent)[1], False]
    assert json.loads(sent)[4] == "__main__"
