"""`jubao cocreation ...` end to end: the shipping-return insurance case (运费险) through the command line
alone, against the gRPC server and its Flight process: create, invite, accept, register with rules,
tokenize and upload, query, and what an outsider is told."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pyarrow.csv as pa_csv
from jubao.cli.common import EXIT_CALL_FAILED
from jubao.cli.main import app
from typer.testing import CliRunner, Result

from tests.bulk.support import FlightProcess
from tests.cocreation.support import BUYERS, SECRET, THRESHOLD, claims, orders
from tests.payments.support import json_document
from tests.platform.harness import Running, demo_keys


class Cli:
    """`jubao --json ...` as one tenant, against the running servers, on a worker thread."""

    def __init__(self, running: Running, flight: FlightProcess, tenant: str) -> None:
        self._base = [
            "--endpoint",
            running.address,
            "--bulk-endpoint",
            f"127.0.0.1:{flight.port}",
            "--api-key",
            demo_keys()[tenant],
        ]

    async def run(self, *args: str, exit_code: int = 0, as_json: bool = True) -> Result:
        options = [*self._base, "--json"] if as_json else self._base
        result = await asyncio.to_thread(CliRunner().invoke, app, [*options, "cocreation", *args])
        assert result.exit_code == exit_code, result.output
        return result

    async def json(self, *args: str) -> dict[str, Any]:
        return json_document((await self.run(*args)).stdout)


async def test_the_insurance_case_through_the_command_line(
    running: Running, flight: FlightProcess, tmp_path: Path
) -> None:
    platform = Cli(running, flight, "demo-platform")
    insurer = Cli(running, flight, "demo-bank")
    outsider = Cli(running, flight, "demo-operator")
    created = await platform.json(
        "create", "运费险", "--ability", "contribute", "--ability", "analyze", "--ability", "receive_results"
    )
    collaboration = created["collaboration"]["collaborationId"]
    await platform.json("invite", collaboration, "demo-bank", "--ability", "contribute")
    await insurer.json("accept", collaboration)
    await platform.json(
        "register", collaboration, "orders",
        "--column", "buyer:string:join_key", "--column", "category:string:dimension",
        "--column", "returns:int64:measure",
        "--group-by", "category", "--filter", "category", "--aggregate", "returns:sum",
        "--min-group-size", str(THRESHOLD), "--train", "returns",
    )  # fmt: skip
    await insurer.json(
        "register", collaboration, "claims",
        "--column", "buyer:string:join_key", "--column", "category:string:never_output",
        "--column", "claimed:int64:measure", "--column", "claim_minor:int64:measure",
        "--column", "note:string:never_output",
        "--aggregate", "claimed:sum,avg", "--min-group-size", str(THRESHOLD), "--train", "claimed",
    )  # fmt: skip

    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    placed = orders()
    pa_csv.write_csv(placed, tmp_path / "orders.csv")
    pa_csv.write_csv(claims(placed), tmp_path / "claims.csv")
    for member, dataset in ((platform, "orders"), (insurer, "claims")):
        sent = await member.run(
            "upload", collaboration, dataset, str(tmp_path / f"{dataset}.csv"),
            "--join-key", "buyer", "--secret-file", str(secret),
        )  # fmt: skip
        assert "rows stored" in sent.stdout
    listed = await platform.json("datasets", collaboration)
    assert {d["datasetId"]: d["state"] for d in listed["datasets"]} == {
        "orders": "STATE_READY",
        "claims": "STATE_READY",
    }

    query = (
        "query", collaboration, "--dataset", "orders", "--dataset", "claims",
        "--group-by", "orders.category", "--aggregate", "count", "--aggregate", "avg:claims.claimed",
    )  # fmt: skip
    result = (await platform.json(*query))["result"]
    categories = [row["cells"][0]["stringValue"] for row in result["rows"]]
    assert categories == sorted(c for c, buyers in BUYERS.items() if buyers >= THRESHOLD)
    assert result["groupsSuppressed"] == "1"
    table = await platform.run(*query, as_json=False)
    assert "1 suppressed" in table.stdout

    trained = await platform.json(
        "train", collaboration, "--dataset", "orders", "--dataset", "claims",
        "--feature", "orders.returns", "--label", "claims.claimed",
    )  # fmt: skip
    model = trained["model"]
    assert model["state"] == "STATE_SUCCEEDED", model
    # Every member sees the models; only those that receive results see their fit.
    (mine,) = (await platform.json("models", collaboration))["models"]
    assert mine["modelId"] == model["modelId"] and mine["fit"] == model["fit"]
    (theirs,) = (await insurer.json("models", collaboration))["models"]
    assert theirs["modelId"] == model["modelId"] and "fit" not in theirs
    assert model["modelId"] in (await platform.run("models", collaboration, as_json=False)).stdout

    # The insurer may not receive results; the outsider does not learn the collaboration exists.
    refused = await insurer.run(*query, exit_code=EXIT_CALL_FAILED)
    assert "ABILITY_MISSING" in refused.stderr
    hidden = await outsider.run("get", collaboration, exit_code=EXIT_CALL_FAILED)
    assert "COLLABORATION_NOT_FOUND" in hidden.stderr
    withdrawn = await insurer.json("withdraw", collaboration, "claims")
    assert withdrawn["dataset"]["state"] == "STATE_WITHDRAWN"


async def test_differential_privacy_through_the_command_line(
    running: Running, flight: FlightProcess, tmp_path: Path
) -> None:
    platform = Cli(running, flight, "demo-platform")
    created = await platform.json(
        "create", "运费险 DP", "--ability", "contribute", "--ability", "analyze",
        "--ability", "receive_results", "--dp-budget-epsilon", "1", "--dp-query-epsilon", "0.5",
    )  # fmt: skip
    collaboration = created["collaboration"]["collaborationId"]
    assert created["collaboration"]["differentialPrivacy"] == {
        "budgetEpsilonMicro": "1000000",
        "queryEpsilonMicro": "500000",
    }
    shown = await platform.run("get", collaboration, as_json=False)
    assert "budget epsilon 1 per member; a query costs 0.5" in shown.stdout
    # The creator changes the budget while no dataset is uploaded.
    changed = await platform.json(
        "set-privacy", collaboration, "--dp-budget-epsilon", "1.5", "--dp-query-epsilon", "0.5"
    )
    assert changed["collaboration"]["differentialPrivacy"]["budgetEpsilonMicro"] == "1500000"
    await platform.json(
        "register", collaboration, "orders",
        "--column", "buyer:string:join_key", "--column", "category:string:dimension",
        "--column", "returns:int64:measure",
        "--group-by", "category", "--aggregate", "returns:sum", "--min-group-size", str(THRESHOLD),
        "--rows-per-key", "2", "--bounds", "returns:0:2", "--train", "category", "--train", "returns",
    )  # fmt: skip
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    pa_csv.write_csv(orders(), tmp_path / "orders.csv")
    await platform.run(
        "upload", collaboration, "orders", str(tmp_path / "orders.csv"),
        "--join-key", "buyer", "--secret-file", str(secret),
    )  # fmt: skip
    query = (
        "query", collaboration, "--dataset", "orders",
        "--group-by", "orders.category", "--aggregate", "count", "--aggregate", "sum:orders.returns",
    )  # fmt: skip
    training = (
        "train", collaboration, "--dataset", "orders", "--feature", "orders.category",
        "--label", "orders.returns", "--preview",
    )  # fmt: skip
    priced = await platform.run(*training, as_json=False)
    assert "costs epsilon 0.5; 1 of 1.5 would be left" in priced.stdout
    preview = await platform.run(*query, "--preview", as_json=False)
    assert "costs epsilon 0.5; 1 of 1.5 would be left" in preview.stdout
    answered = await platform.run(*query, as_json=False)
    assert "noised: OpenDP" in answered.stdout
    assert "costs epsilon 0.5; 1 of 1.5 left" in answered.stdout
    await platform.json(*query)
    await platform.json(*query)
    spent = await platform.run(*query, exit_code=EXIT_CALL_FAILED)
    assert "PRIVACY_BUDGET_EXHAUSTED" in spent.stderr
