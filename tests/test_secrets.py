"""Cluster secrets: generated ones are strong and accepted, weak typed ones are refused at start."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
import pytest

from sayit_node.passphrase import MIN_BITS, estimated_bits, generate_secret, passphrase_words, secret_problem, wordlist
from tests.conftest import ROOT, NodeProcess

WEAK = ["alpha", "another cluster", "correct horse battery staple", "correct-horse-battery-staple",
        "Tr0ub4dor&3", "my-cluster-secret", "kitchen-office-2024"]


def test_generated_secrets_are_7_eff_words_and_pass_the_check():
    assert len(wordlist()) == 7776
    words = set(passphrase_words())
    # Hyphenated list words (yo-yo) would make "-".split() miscount a passphrase's words.
    assert len(words) == 7772 and not any("-" in w for w in words)  # 12.92 bits a word, 90.5 for seven
    seen = set()
    for _ in range(20):
        secret = generate_secret()
        parts = secret.split("-")
        assert len(parts) == 7 and set(parts) <= words
        assert estimated_bits(secret) >= MIN_BITS and secret_problem(secret) is None
        seen.add(secret)
    assert len(seen) == 20
    with pytest.raises(ValueError):
        generate_secret(5)


@pytest.mark.parametrize("secret", WEAK)
def test_weak_secrets_are_refused_with_one_line(secret):
    problem = secret_problem(secret)
    assert problem is not None and "\n" not in problem and "sayit-node secret" in problem
    assert secret_problem(None) is None and secret_problem("") is None  # open cluster: nothing to check


def _cli(*args, env=None, timeout=30):
    return subprocess.run([sys.executable, "-m", "sayit_node", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def test_cli_prints_a_secret_that_a_node_accepts(tmp_path):
    out = _cli("secret")
    assert out.returncode == 0, out.stderr
    secret = out.stdout.strip()
    assert len(secret.split("-")) == 7 and out.stdout.count("\n") == 1
    node = NodeProcess(tmp_path / "n", {"SAYIT_CLUSTER_SECRET": secret, "SAYIT_ENGINE": "simulated"})
    try:
        node.start()
        assert httpx.get(node.url + "/api/health").status_code == 200
    finally:
        node.stop()
    env = {**node.env, "SAYIT_CLUSTER_SECRET": secret}
    pw = _cli("secret", "--redis-password", env=env)
    assert pw.returncode == 0 and len(pw.stdout.strip()) == 64 and secret not in pw.stdout


def test_node_with_a_weak_secret_refuses_to_start_with_one_line(tmp_path):
    node = NodeProcess(tmp_path / "n", {"SAYIT_CLUSTER_SECRET": "correct horse battery staple",
                                        "SAYIT_ENGINE": "simulated"})
    result = _cli("serve", env=node.env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sayit-node: error: the cluster secret is too weak"), result.stderr
    assert "correct horse" not in result.stderr  # the secret itself is not echoed
    # the same secret given as a flag, and to a worker-only process
    flag = _cli("serve", "--cluster-secret", "alpha", env={**node.env, "SAYIT_CLUSTER_SECRET": ""})
    assert flag.returncode == 1 and "too weak" in flag.stderr
    worker = _cli("worker", env={**node.env, "REDIS_URL": "redis://127.0.0.1:1/0"})
    assert worker.returncode == 1 and "too weak" in worker.stderr


def test_the_readme_example_secret_is_one_a_node_accepts():
    examples = set(re.findall(r"--cluster-secret ([\w-]+)", (ROOT / "README.md").read_text()))
    assert examples, "the README shows a --cluster-secret example"
    for secret in examples:
        assert secret_problem(secret) is None, secret
