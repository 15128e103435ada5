"""Tests of snapcrawl.simulator: the SCP API it serves, the data behind it and the faults it injects."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import itertools
import re
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import msgspec
import pytest
import yarl

from snapcrawl._config import Credentials
from snapcrawl._models import decode_page
from snapcrawl._signing import Signer
from snapcrawl.simulator import (
    DEMO_CREDENTIALS,
    SORT_KEYS,
    STATS_PATH,
    Dataset,
    Faults,
    Simulator,
    run_in_thread,
)
from snapcrawl.simulator.faults import Plan
from tests.simulator.helpers import Api, biggest_volume, demo_signer, empty_volume, wait_for

FIELDS = {
    "created_at",
    "description",
    "id",
    "metadata",
    "name",
    "size",
    "status",
    "updated_at",
    "user_id",
    "volume_id",
}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
SortSpec = list[tuple[str, bool]]  # (key, descending)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A keep-alive client session for one test."""
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def api(session: aiohttp.ClientSession, simulator: Simulator) -> Api:
    """A client of the shared simulator, signing for API version 1.3."""
    return Api(session, simulator.url, Signer(simulator.credentials, api_version="1.3"))


def _sort_value(snapshot: dict[str, Any], key: str) -> Any:
    value = snapshot[key]
    if key == "created_at":
        moment = dt.datetime.fromisoformat(value)
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    if key in ("name", "status"):
        return (value is not None, value or "")
    return value


def full_spec(spec: SortSpec) -> SortSpec:
    """The spec with the documented tie-break: id, in the first key's direction."""
    return spec if any(key == "id" for key, _ in spec) else [*spec, ("id", spec[0][1])]


def assert_ordered(items: list[dict[str, Any]], spec: SortSpec) -> None:
    """Each snapshot comes strictly after the one before it under ``spec`` plus the id tie-break."""
    spec = full_spec(spec)
    for before, after in itertools.pairwise(items):
        for key, descending in spec:
            a, b = _sort_value(before, key), _sort_value(after, key)
            if a != b:
                assert (a > b) if descending else (a < b), (key, before, after)
                break
        else:
            pytest.fail(f"two snapshots tie on every key: {before['id']}")


def expected(snapshots: list[dict[str, Any]], spec: SortSpec) -> list[dict[str, Any]]:
    """``snapshots`` sorted by ``spec`` plus the tie-break, the slow and obvious way."""
    result = list(snapshots)
    for key, descending in reversed(full_spec(spec)):
        result.sort(key=lambda item, key=key: _sort_value(item, key), reverse=descending)  # type: ignore[misc]
    return result


# -- a valid request -------------------------------------------------------------------------------------------


async def test_valid_request_returns_a_default_page(api: Api, simulator: Simulator) -> None:
    """A signed request without parameters gets the account's first 20 snapshots and the total count."""
    reply = await api.get()
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json"
    assert email.utils.parsedate_to_datetime(reply.headers["Date"]).tzinfo is not None
    page = reply.json()
    assert page["count"] == simulator.dataset.total
    assert len(page["snapshots"]) == 20
    assert all(set(item) == FIELDS for item in page["snapshots"])
    everything = simulator.dataset.snapshots()
    assert page["snapshots"] == expected(everything, [("created_at", True)])[:20]


async def test_volume_listing_matches_the_dataset(api: Api, simulator: Simulator) -> None:
    """A volume's listing holds exactly its snapshots, newest first, as the dataset has them."""
    volume = biggest_volume(simulator.dataset)
    page = await api.page(volume_id=volume, limit="1000")
    assert page["count"] == simulator.dataset.count(volume) >= 100
    assert page["snapshots"] == expected(simulator.dataset.snapshots(volume), [("created_at", True)])


async def test_pages_decode_with_the_wire_models(api: Api, simulator: Simulator) -> None:
    """The project's own page decoder accepts every snapshot the simulator serves."""
    page = await api.get({"limit": "1000"})
    decoded = decode_page(page.body)
    assert decoded.count == simulator.dataset.total
    assert all(item.created_at.tzinfo is not None for item in decoded.snapshots)


async def test_root_lists_the_api_versions(api: Api) -> None:
    """The service root lists versions 1.0 to 1.3 with their lifecycle, without authentication."""
    reply = await api.get(path="/", signer=None)
    versions = {item["id"]: item for item in reply.json()["versions"]}
    assert reply.status == 200
    assert set(versions) == {"v1.0", "v1.1", "v1.2", "v1.3"}
    assert versions["v1.3"]["status"] == "CURRENT"
    assert versions["v1.0"]["status"] == "DEPRECATED"


async def test_unknown_path_is_a_json_404(api: Api) -> None:
    """Paths other than the listing and the root get a JSON 404."""
    reply = await api.get(path="/v1/snapshots/extra")
    assert reply.status == 404
    assert reply.json()["path"] == "/v1/snapshots/extra"


async def test_other_methods_are_refused(api: Api) -> None:
    """Only GET lists snapshots."""
    reply = await api.get(method="POST")
    assert reply.status == 405


# -- authentication --------------------------------------------------------------------------------------------


async def test_missing_access_key_gets_the_gateway_404(session: aiohttp.ClientSession, simulator: Simulator) -> None:
    """A request without Scp-Accesskey is answered like SCP's gateway: 404 with its own body shape."""
    reply = await Api(session, simulator.url, None).get()
    body = reply.json()
    assert reply.status == 404
    assert set(body) == {"timestamp", "path", "status", "error", "requestId"}
    assert body["status"] == 404
    assert body["path"] == "/v1/snapshots"


async def test_bad_signature_is_a_401_with_the_scp_error_body(api: Api) -> None:
    """A signature made with the wrong secret key is refused with SCP's error body."""
    wrong = Credentials(access_key=DEMO_CREDENTIALS.access_key, secret_key="not-the-secret")
    reply = await api.get(signer=Signer(wrong, api_version="1.3"))
    assert reply.status == 401
    (error,) = reply.json()["errors"]
    assert error["code"] == error["title"] == "Unauthorized"
    assert error["status"] == 401
    assert error["detail"] == "Invalid signature"
    assert error["request_id"].startswith("req-")
    assert error["global_request_id"].startswith("req-")


AUTH_FAILURES: dict[str, tuple[Callable[[], Signer], dict[str, str | None], str]] = {
    "unknown-access-key": (
        lambda: Signer(Credentials(access_key="somebody", secret_key="else"), api_version="1.3"),
        {},
        "Unknown access key",
    ),
    "skewed-clock": (lambda: demo_signer(clock=lambda: time.time() - 3600), {}, "Scp-Timestamp"),
    "clock-ahead": (lambda: demo_signer(clock=lambda: time.time() + 3600), {}, "Scp-Timestamp"),
    "timestamp-not-an-integer": (demo_signer, {"Scp-Timestamp": "1753174800.5"}, "Scp-Timestamp"),
    "wrong-client-type": (lambda: demo_signer(client_type="Web"), {}, "Scp-ClientType"),
    "unknown-version": (lambda: demo_signer(api_version="2.0"), {}, "Scp-Api-Version"),
    "version-without-service": (demo_signer, {"Scp-Api-Version": "1.3"}, "Scp-Api-Version"),
    "no-signature": (demo_signer, {"Scp-Signature": None}, "Scp-Signature"),
    "no-timestamp": (demo_signer, {"Scp-Timestamp": None}, "Scp-Timestamp"),
    "no-client-type": (demo_signer, {"Scp-ClientType": None}, "Scp-ClientType"),
    "no-version": (demo_signer, {"Scp-Api-Version": None}, "Scp-Api-Version"),
    "no-language": (demo_signer, {"Accept-Language": None}, "Accept-Language"),
    "signature-of-another-request": (demo_signer, {"Scp-Signature": "AAAA"}, "Invalid signature"),
}


@pytest.mark.parametrize("case", AUTH_FAILURES)
async def test_auth_failures_are_401(api: Api, case: str) -> None:
    """Every way of getting the headers wrong is answered 401 with a detail naming the problem."""
    make_signer, headers, detail = AUTH_FAILURES[case]
    reply = await api.get({"limit": "1"}, signer=make_signer(), headers=headers)
    assert reply.status == 401, reply.body
    assert detail in reply.json()["errors"][0]["detail"]


async def test_header_names_are_case_insensitive(api: Api, simulator: Simulator) -> None:
    """Headers sent in lower case are accepted."""
    url = f"{simulator.url}/v1/snapshots?limit=1"
    headers = {name.lower(): value for name, value in demo_signer().headers("GET", url).items()}
    async with api.session.get(yarl.URL(url, encoded=True), headers=headers) as response:
        assert response.status == 200


async def test_signature_covers_the_exact_query_bytes(api: Api, simulator: Simulator) -> None:
    """A query encoded differently from the signed one is refused; any order of parameters works if signed."""
    signed = f"{simulator.url}/v1/snapshots?name=backup%20x&limit=1"
    sent = f"{simulator.url}/v1/snapshots?name=backup+x&limit=1"
    async with api.session.get(yarl.URL(sent, encoded=True), headers=demo_signer().headers("GET", signed)) as bad:
        assert bad.status == 401
    reply = await api.get("with_count=false&limit=1")
    assert reply.status == 200
    assert reply.json()["count"] is None


async def test_account_id_is_signed_and_checked() -> None:
    """With an account id configured the header is required, must match, and is part of the signature."""
    credentials = Credentials(access_key="ak", secret_key="sk", account_id="acct-1")
    async with Simulator(volumes=3, credentials=credentials) as sim, aiohttp.ClientSession() as client:
        api = Api(client, sim.url, Signer(credentials, api_version="1.3"))
        assert (await api.get()).status == 200
        without = Signer(Credentials(access_key="ak", secret_key="sk"), api_version="1.3")
        assert (await api.get(signer=without)).status == 401
        other = Signer(Credentials(access_key="ak", secret_key="sk", account_id="acct-2"), api_version="1.3")
        assert (await api.get(signer=other)).status == 401
        assert (await api.get(headers={"Scp-AccountId": "acct-2"})).status == 401


async def test_account_id_header_is_signed_even_when_not_configured(api: Api) -> None:
    """A client that sends an account id the simulator does not require still signs over it."""
    with_account = Credentials(
        access_key=DEMO_CREDENTIALS.access_key, secret_key=DEMO_CREDENTIALS.secret_key, account_id="acct-9"
    )
    assert (await api.get(signer=Signer(with_account, api_version="1.3"))).status == 200
    assert (await api.get(headers={"Scp-AccountId": "acct-9"})).status == 401


# -- validation ------------------------------------------------------------------------------------------------

BAD_QUERIES = {
    "unknown-key": ("foo=1", "foo"),
    "repeated-key": ("limit=5&limit=6", "limit"),
    "limit-zero": ("limit=0", "limit"),
    "limit-too-big": ("limit=1001", "limit"),
    "limit-negative": ("limit=-3", "limit"),
    "limit-not-a-number": ("limit=ten", "limit"),
    "limit-not-an-integer": ("limit=1.5", "limit"),
    "limit-empty": ("limit=", "limit"),
    "limit-without-value": ("limit", "limit"),
    "negative-offset": ("offset=-1", "offset"),
    "offset-not-a-number": ("offset=x", "offset"),
    "with_count-capitalised": ("with_count=True", "with_count"),
    "with_count-as-a-number": ("with_count=1", "with_count"),
    "unknown-marker": ("marker=00000000-0000-4000-8000-000000000000", "marker"),
    "unknown-sort-key": ("sort=volume_id%3Aasc", "sort"),
    "unknown-sort-direction": ("sort=name%3Aup", "sort"),
    "repeated-sort-key": ("sort=name%2Cname%3Aasc", "sort"),
    "empty-sort-item": ("sort=name%2C", "sort"),
    "broken-percent-escape": ("name=%zz", "name"),
    "not-UTF-8": ("name=%FF", "name"),
}


@pytest.mark.parametrize("case", BAD_QUERIES)
async def test_invalid_queries_are_400(api: Api, case: str) -> None:
    """Every invalid query is answered 400 with a ValidationError naming the parameter."""
    query, parameter = BAD_QUERIES[case]
    reply = await api.get(query)
    assert reply.status == 400, reply.body
    (error,) = reply.json()["errors"]
    assert error["code"] == error["title"] == "ValidationError"
    assert error["status"] == 400
    assert isinstance(error["detail"], list)
    assert any(parameter in detail for detail in error["detail"]), error["detail"]


async def test_sort_needs_api_version_1_2(api: Api) -> None:
    """``sort`` is refused below API version 1.2 and accepted from it on."""
    old = await api.get({"sort": "name:asc"}, signer=demo_signer(api_version="1.1"))
    assert old.status == 400
    assert "sort" in old.json()["errors"][0]["detail"][0]
    assert (await api.get({"limit": "1"}, signer=demo_signer(api_version="1.0"))).status == 200
    assert (await api.get({"sort": "name:asc"}, signer=demo_signer(api_version="1.2"))).status == 200


# -- pagination ------------------------------------------------------------------------------------------------


async def test_marker_walk_lists_every_snapshot_once_in_order(api: Api, simulator: Simulator) -> None:
    """Following markers through a large volume yields each snapshot once, in the default order."""
    volume = biggest_volume(simulator.dataset)
    items, requests = await api.walk(volume_id=volume, limit="37")
    want = expected(simulator.dataset.snapshots(volume), [("created_at", True)])
    assert items == want
    assert requests == len(want) // 37 + 1


async def test_marker_walk_over_the_whole_account(api: Api, simulator: Simulator) -> None:
    """The account-wide listing, walked by marker, holds every snapshot of every volume exactly once."""
    items, _ = await api.walk(limit="1000")
    ids = [item["id"] for item in items]
    assert len(ids) == len(set(ids)) == simulator.dataset.total
    assert set(ids) == {item["id"] for item in simulator.dataset.snapshots()}
    assert_ordered(items, [("created_at", True)])


async def test_offset_limit_and_marker_combine(api: Api, simulator: Simulator) -> None:
    """offset skips items, limit caps the page, and offset applies after the marker's position."""
    volume = biggest_volume(simulator.dataset)
    want = expected(simulator.dataset.snapshots(volume), [("created_at", True)])
    assert (await api.page(volume_id=volume))["snapshots"] == want[:20]
    assert (await api.page(volume_id=volume, offset="5", limit="10"))["snapshots"] == want[5:15]
    marked = await api.page(volume_id=volume, marker=want[9]["id"], offset="3", limit="4")
    assert marked["snapshots"] == want[13:17]
    assert marked["count"] == len(want)
    past_end = await api.page(volume_id=volume, offset=str(len(want) + 5))
    assert past_end == {"count": len(want), "snapshots": []}
    last = await api.page(volume_id=volume, marker=want[-1]["id"])
    assert last["snapshots"] == []


async def test_count_is_null_without_count(api: Api, simulator: Simulator) -> None:
    """``with_count=false`` gives a null count; ``with_count=true`` the total matching."""
    volume = biggest_volume(simulator.dataset)
    assert (await api.page(volume_id=volume, with_count="false"))["count"] is None
    assert (await api.page(volume_id=volume, with_count="true"))["count"] == simulator.dataset.count(volume)


async def test_unknown_volume_is_an_empty_listing(api: Api) -> None:
    """An unknown volume id lists nothing rather than failing."""
    page = await api.page(volume_id="3f500f00-ed80-4566-a057-e31760226f9a")
    assert page == {"count": 0, "snapshots": []}


async def test_marker_of_another_listing_is_refused(api: Api, simulator: Simulator) -> None:
    """A marker must belong to the listing it continues."""
    volumes = [volume for volume in simulator.dataset.volume_ids if simulator.dataset.count(volume)]
    foreign = simulator.dataset.snapshots(volumes[1])[0]["id"]
    reply = await api.get({"volume_id": volumes[0], "marker": foreign})
    assert reply.status == 400


@pytest.mark.parametrize(
    "name",
    ["backup ü/ñ", "weekly & monthly + 50% = ?#", "📦 archive", " padded  name ", "스냅샷-1", "snapshot-2"],
    ids=["latin", "reserved-characters", "emoji", "spaces", "hangul", "plain"],
)
async def test_name_filter_is_an_exact_match(api: Api, simulator: Simulator, name: str) -> None:
    """``name`` selects exactly the snapshots with that name, whatever characters it holds."""
    items, _ = await api.walk(name=name, limit="1000")
    want = [item for item in simulator.dataset.snapshots() if item["name"] == name]
    assert want
    assert sorted(item["id"] for item in items) == sorted(item["id"] for item in want)
    assert all(item["name"] == name for item in items)
    assert (await api.page(name=name, limit="1"))["count"] == len(want)


async def test_name_filter_does_not_match_prefixes(api: Api) -> None:
    """A name that only starts like existing ones matches nothing."""
    assert await api.page(name="snapshot") == {"count": 0, "snapshots": []}


@pytest.mark.parametrize("direction", ["asc", "desc"])
@pytest.mark.parametrize("key", SORT_KEYS)
async def test_every_sort_key_in_both_directions(api: Api, simulator: Simulator, key: str, direction: str) -> None:
    """Each sort key orders the whole account as documented, nulls first ascending, ties broken by id."""
    items, _ = await api.walk(sort=f"{key}:{direction}", limit="1000")
    spec = [(key, direction == "desc")]
    assert_ordered(items, spec)
    assert items == expected(simulator.dataset.snapshots(), spec)


async def test_multi_key_sort_and_default_direction(api: Api, simulator: Simulator) -> None:
    """Several keys sort in turn, and a key without a direction sorts descending."""
    volume = biggest_volume(simulator.dataset)
    page = await api.page(volume_id=volume, sort="status:asc,size,name:asc", limit="1000")
    spec = [("status", False), ("size", True), ("name", False)]
    assert_ordered(page["snapshots"], spec)
    assert page["snapshots"] == expected(simulator.dataset.snapshots(volume), spec)


async def test_null_names_sort_first_ascending(api: Api) -> None:
    """Snapshots without a name come first in ascending name order and last in descending."""
    ascending = await api.page(sort="name:asc", limit="5")
    descending = await api.page(sort="name:desc", offset=str(ascending["count"] - 1))
    assert ascending["snapshots"][0]["name"] is None
    assert descending["snapshots"][-1]["name"] is None


async def test_unicode_survives_the_round_trip(api: Api, simulator: Simulator) -> None:
    """Non-ASCII names and descriptions arrive as the dataset has them."""
    items, _ = await api.walk(name="스냅샷-1", limit="1000")
    by_id = {item["id"]: item for item in simulator.dataset.snapshots()}
    assert items
    assert all(by_id[item["id"]] == item for item in items)


# -- the dataset -----------------------------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_data() -> None:
    """The same volumes and seed give the same bytes; another seed gives other data."""
    first, second = Dataset(300, seed=7), Dataset(300, seed=7)
    assert msgspec.json.encode(first.snapshots()) == msgspec.json.encode(second.snapshots())
    assert Dataset(10, seed=7).volume_ids == first.volume_ids[:10]
    assert Dataset(10, seed=7).snapshots(first.volume_ids[3]) == first.snapshots(first.volume_ids[3])
    assert set(Dataset(300, seed=8).volume_ids).isdisjoint(first.volume_ids)


def test_snapshot_counts_are_skewed() -> None:
    """Most volumes have 0-5 snapshots, some 6-40, about 2% between 100 and 400."""
    dataset = Dataset(5000, seed=1)
    counts = Counter(dataset.count(volume) for volume in dataset.volume_ids)
    share = {
        band: sum(n for count, n in counts.items() if low <= count <= high) / 5000
        for band, (low, high) in {"small": (0, 5), "medium": (6, 40), "large": (100, 400)}.items()
    }
    assert 0.80 < share["small"] < 0.90
    assert 0.10 < share["medium"] < 0.16
    assert 0.01 < share["large"] < 0.035
    assert sum(share.values()) == pytest.approx(1.0)
    assert counts[0] > 0
    assert dataset.total == sum(count * n for count, n in counts.items())


def test_fields_vary_like_the_real_api(simulator: Simulator) -> None:
    """The data has every shape the API allows: naive times, nulls, unicode, all three metadata types."""
    items = simulator.dataset.snapshots()
    naive = sum(not item["created_at"].endswith("Z") for item in items) / len(items)
    assert 0.02 < naive < 0.09
    assert {type(item["metadata"]) for item in items} == {dict, str, type(None)}
    assert len({item["status"] for item in items}) == 7
    assert Counter(item["status"] for item in items).most_common(1)[0][0] == "available"
    for field in ("name", "description", "updated_at", "user_id"):
        assert any(item[field] is None for item in items), field
    assert any(not item["name"].isascii() for item in items if item["name"])
    assert all(UUID.fullmatch(item["id"]) and UUID.fullmatch(item["volume_id"]) for item in items)
    assert all(re.fullmatch(r"[0-9a-f]{32}", item["user_id"]) for item in items if item["user_id"])
    assert len({item["id"] for item in items}) == len(items)


def test_unknown_volume_has_no_snapshots() -> None:
    """An id that is not one of the dataset's volumes has nothing."""
    dataset = Dataset(3, seed=0)
    assert dataset.count("nope") == 0
    assert dataset.snapshots("nope") == []


# -- faults ----------------------------------------------------------------------------------------------------


async def test_rate_limit_answers_429_with_retry_after_seconds(api: Api, simulator: Simulator) -> None:
    """Past the burst, requests get 429 and Retry-After in whole seconds, rounded up."""
    simulator.faults = Faults(rate_limit=0.01, rate_burst=2)  # a token per 100 s: no refill during the test
    statuses = [(await api.get({"limit": "1"})) for _ in range(3)]
    assert [reply.status for reply in statuses] == [200, 200, 429]
    throttled = statuses[-1]
    assert throttled.headers["Retry-After"].isdigit()
    assert 99 <= int(throttled.headers["Retry-After"]) <= 100  # ceil(100 s - the time the test took)
    assert throttled.json()["errors"][0]["status"] == 429


async def test_retry_after_as_http_date(api: Api, simulator: Simulator) -> None:
    """Retry-After can be an HTTP date a little in the future."""
    simulator.faults = Faults(rate_limit=0.5, rate_burst=1, retry_after="http-date")
    await api.get()
    reply = await api.get()
    assert reply.status == 429
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT", reply.headers["Retry-After"])
    when = email.utils.parsedate_to_datetime(reply.headers["Retry-After"])
    wait = (when - dt.datetime.now(dt.UTC)).total_seconds()
    assert 0 < wait <= 3


async def test_retry_after_can_be_absent(api: Api, simulator: Simulator) -> None:
    """With ``retry_after='none'`` a 429 carries no Retry-After."""
    simulator.faults = Faults(rate_limit=0.01, rate_burst=1, retry_after="none")
    await api.get()
    reply = await api.get()
    assert reply.status == 429
    assert "Retry-After" not in reply.headers


async def test_rate_limit_comes_before_auth(api: Api, session: aiohttp.ClientSession, simulator: Simulator) -> None:
    """Once the bucket is empty, even unauthenticated requests are throttled."""
    simulator.faults = Faults(rate_limit=0.01, rate_burst=1)
    assert (await api.get()).status == 200
    assert (await Api(session, simulator.url, None).get()).status == 429


def test_bucket_refills_at_the_rate() -> None:
    """The bucket earns ``rate`` tokens a second up to the burst (a plan driven by explicit times)."""
    plan = Plan(Faults(rate_limit=40, rate_burst=2), seed=0)
    plan.arrive(100.0)
    assert [plan.throttle(100.0)[1], plan.throttle(100.0)[1]] == [0.0, 0.0]
    assert plan.throttle(100.0)[1] == pytest.approx(1 / 40)
    assert plan.throttle(100.01)[1] == pytest.approx(0.6 / 40)
    assert plan.throttle(100.035)[1] == 0.0  # 1.4 tokens earned by now
    assert plan.throttle(200.0)[2] == 1.0  # full again (2), one taken


async def test_rate_limit_holds_over_time(api: Api, simulator: Simulator) -> None:
    """However fast the requests come, no more than burst plus rate times elapsed succeed."""
    simulator.faults = Faults(rate_limit=5, rate_burst=2)
    started = time.monotonic()
    replies = [(await api.get({"limit": "1"})).status for _ in range(30)]
    elapsed = time.monotonic() - started
    assert replies[:2] == [200, 200]
    assert replies.count(200) <= 2 + 5 * elapsed + 1
    assert replies.count(200) + replies.count(429) == 30


async def test_error_rate_answers_503(api: Api, simulator: Simulator) -> None:
    """About ``error_rate`` of the requests get 503 with SCP's JSON error body."""
    simulator.faults = Faults(error_rate=0.3)
    replies = [await api.get({"limit": "1"}) for _ in range(200)]
    failed = [reply for reply in replies if reply.status == 503]
    assert 0.2 < len(failed) / 200 < 0.4
    assert all(reply.status == 200 for reply in replies if reply.status != 503)
    assert failed[0].json()["errors"][0]["code"] == "ServiceUnavailable"


async def test_fault_decisions_repeat_for_the_same_faults(api: Api, simulator: Simulator) -> None:
    """Assigning the same faults again replays the same sequence of decisions."""
    simulator.faults = Faults(error_rate=0.5)
    first = [(await api.get({"limit": "1"})).status for _ in range(20)]
    simulator.faults = Faults(error_rate=0.5)
    second = [(await api.get({"limit": "1"})).status for _ in range(20)]
    assert first == second
    assert set(first) == {200, 503}


async def test_drop_closes_the_connection_without_an_answer(api: Api, simulator: Simulator) -> None:
    """A dropped request ends in a disconnect, not a response."""
    simulator.faults = Faults(drop_rate=1.0)
    with pytest.raises(aiohttp.ClientConnectionError):
        await api.get()
    # aiohttp retries an idempotent request once when a pooled connection drops, so there may be two.
    assert simulator.stats.dropped == simulator.stats.requests >= 1
    assert not simulator.stats.by_status
    simulator.faults = Faults()
    assert (await api.get()).status == 200


async def test_latency_delays_every_answer(api: Api, simulator: Simulator) -> None:
    """A fixed latency delays every answer by at least that much."""
    simulator.faults = Faults(latency=0.2)
    started = time.monotonic()
    assert (await api.get({"limit": "1"})).status == 200
    assert time.monotonic() - started >= 0.2


def test_ranged_latency_draws_within_the_range() -> None:
    """A latency range gives delays spread inside it, the same for the same seed."""
    delays = [Plan(Faults(latency=(0.05, 0.1)), seed=3).delay() for _ in range(2)]
    plan = Plan(Faults(latency=(0.05, 0.1)), seed=3)
    drawn = [plan.delay() for _ in range(200)]
    assert all(0.05 <= delay <= 0.1 for delay in drawn)
    assert min(drawn) < 0.06 and max(drawn) > 0.09
    assert delays == [drawn[0], drawn[0]]


async def test_client_hanging_up_ends_the_request(api: Api, simulator: Simulator) -> None:
    """A request whose client gives up during the latency stops counting as in flight at once."""
    simulator.faults = Faults(latency=5.0)
    with pytest.raises(asyncio.TimeoutError):
        async with asyncio.timeout(0.2):
            await api.get()
    for _ in range(1000):  # the server notices the hang-up on its own thread: poll, for up to ten seconds
        if not simulator.stats.in_flight:
            break
        await asyncio.sleep(0.01)
    assert simulator.stats.in_flight == 0


async def test_truncated_body_is_valid_http_and_broken_json(api: Api, simulator: Simulator) -> None:
    """A truncated answer is a 200 carrying the first half of the page, with a matching Content-Length."""
    volume = biggest_volume(simulator.dataset)
    full = await api.get({"volume_id": volume, "limit": "50"})
    simulator.faults = Faults(truncate_rate=1.0)
    cut = await api.get({"volume_id": volume, "limit": "50"})
    assert cut.status == 200
    assert cut.body == full.body[: len(full.body) // 2]
    assert int(cut.headers["Content-Length"]) == len(cut.body)
    with pytest.raises(msgspec.DecodeError):
        cut.json()


async def test_html_error_page(api: Api, simulator: Simulator) -> None:
    """An HTML fault is a 502 with a text/html page, as a proxy in front of the API would send."""
    simulator.faults = Faults(html_rate=1.0)
    reply = await api.get()
    assert reply.status == 502
    assert reply.headers["Content-Type"].startswith("text/html")
    assert reply.body.startswith(b"<html>")


async def test_failing_volume_is_always_500(api: Api, simulator: Simulator) -> None:
    """A volume in ``fail_volumes`` always gets 500, other volumes are unaffected."""
    bad, good = simulator.dataset.volume_ids[:2]
    simulator.faults = Faults(fail_volumes=frozenset({bad}))
    for _ in range(3):
        reply = await api.get({"volume_id": bad})
        assert reply.status == 500
        assert reply.json()["errors"][0]["status"] == 500
    assert (await api.get({"volume_id": good})).status == 200


async def test_malformed_volume_gets_broken_json(api: Api, simulator: Simulator) -> None:
    """A volume in ``malformed_volumes`` gets a 200 whose body is not JSON."""
    volume = simulator.dataset.volume_ids[0]
    simulator.faults = Faults(malformed_volumes=[volume])  # type: ignore[arg-type]
    reply = await api.get({"volume_id": volume})
    assert reply.status == 200
    with pytest.raises(msgspec.DecodeError):
        reply.json()


async def test_huge_volume_gets_a_huge_valid_page(api: Api, simulator: Simulator) -> None:
    """A volume in ``huge_volumes`` gets valid JSON larger than ``huge_body_bytes``, even when empty."""
    full, empty = biggest_volume(simulator.dataset), empty_volume(simulator.dataset)
    normal = (await api.get({"volume_id": full})).json()
    simulator.faults = Faults(huge_volumes=frozenset({full, empty}), huge_body_bytes=256 * 1024)
    reply = await api.get({"volume_id": full})
    assert reply.status == 200
    assert len(reply.body) > 256 * 1024
    page = reply.json()
    assert len(page["snapshots"][0]["description"]) > 256 * 1024
    assert page["snapshots"][1:] == normal["snapshots"][1:]
    empty_reply = await api.get({"volume_id": empty})
    assert len(empty_reply.body) > 256 * 1024
    assert empty_reply.json() == {"count": 0, "snapshots": []}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"error_rate": 1.5},
        {"error_rate": 0.6, "drop_rate": 0.6},
        {"rate_limit": 0},
        {"rate_burst": 0},
        {"latency": -1.0},
        {"latency": (0.2, 0.1)},
        {"retry_after": "soon"},
        {"huge_body_bytes": -1},
        {"bomb_bytes": -1},
        {"max_limit": 0},
        {"pause": ((1.0, -1.0),)},
        {"quota_schedule": ((1.0, 0.0),)},
        {"ratelimit_headers": "x-style"},
    ],
)
def test_invalid_faults_are_refused(kwargs: dict[str, Any]) -> None:
    """Faults that cannot be honoured raise ValueError when built."""
    with pytest.raises(ValueError, match=r"."):
        Faults(**kwargs)


def test_faults_compare_by_value() -> None:
    """Faults are immutable values; volume sets given as lists become frozensets, schedules tuples of floats."""
    assert Faults() == Faults()
    assert Faults(fail_volumes=["a"]).fail_volumes == frozenset({"a"})  # type: ignore[arg-type]
    assert Faults(pause=[[1, 2]]).pause == ((1.0, 2.0),)  # type: ignore[arg-type]
    assert Faults(quota_schedule=((0, 5),)) == Faults(quota_schedule=((0.0, 5.0),))
    with pytest.raises(AttributeError):
        Faults().error_rate = 1.0  # type: ignore[misc]


# -- lifecycle and stats ---------------------------------------------------------------------------------------


async def test_stop_and_start_reuse_the_port(session: aiohttp.ClientSession) -> None:
    """A restarted simulator serves again on the same URL; while stopped, connections are refused."""
    async with Simulator(volumes=3, seed=1) as sim:
        api = Api(session, sim.url, demo_signer())
        url = sim.url
        assert (await api.get()).status == 200
        await sim.stop()
        assert not sim.running
        with pytest.raises(aiohttp.ClientConnectionError):
            await api.get()
        await sim.start()
        assert sim.url == url
        assert (await api.get()).status == 200


async def test_threaded_simulator_restarts_from_the_client_loop(session: aiohttp.ClientSession) -> None:
    """A thread-run simulator can be stopped and started by awaiting from the test's own loop."""
    with run_in_thread(volumes=3, seed=2) as sim:
        api = Api(session, sim.url, demo_signer())
        assert (await api.get()).status == 200
        await sim.stop()
        with pytest.raises(aiohttp.ClientConnectionError):
            await api.get()
        await sim.start()
        assert (await api.get()).status == 200


def test_run_in_thread_reports_a_busy_port() -> None:
    """Starting on a port that is taken raises in the caller's thread."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=r"."), run_in_thread(volumes=1, port=port):
            pass


async def test_stats_count_requests_and_answers(api: Api, simulator: Simulator) -> None:
    """Stats record arrivals and answers by status; reset forgets them."""
    replies = await asyncio.gather(*(api.get({"limit": "1"}) for _ in range(8)))
    stats = simulator.stats
    assert [reply.status for reply in replies] == [200] * 8
    assert stats.requests == len(stats.arrivals) == 8
    assert stats.by_status == Counter({200: 8})
    assert stats.in_flight == 0
    assert 1 <= stats.max_in_flight <= 8
    stats.reset()
    assert (stats.requests, stats.max_in_flight, stats.arrivals, stats.seconds) == (0, 0, [], [])


async def test_stats_count_requests_in_flight(api: Api, simulator: Simulator) -> None:
    """Eight requests held by the server at once count as eight in flight, and none once their clients hang up."""
    simulator.faults = Faults(latency=60.0)
    tasks = [asyncio.create_task(api.get({"limit": "1"})) for _ in range(8)]
    await wait_for(lambda: simulator.stats.in_flight == 8)
    assert simulator.stats.max_in_flight == 8
    assert simulator.stats.max_in_window(60.0) == 8
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await wait_for(lambda: simulator.stats.in_flight == 0)
    assert simulator.stats.max_in_flight == 8


async def test_stats_endpoint_reports_without_counting_itself(simulator: Simulator) -> None:
    """GET /_simulator/stats returns the counters as JSON and is neither counted nor faulted."""
    simulator.faults = Faults(error_rate=1.0)
    async with aiohttp.ClientSession() as session:
        async with session.get(simulator.url + "/v1/snapshots") as response:
            assert response.status == 503
        async with session.get(simulator.url + STATS_PATH) as response:
            assert response.status == 200
            data = await response.json()
    assert data["requests"] == 1 and data["by_status"] == {"503": 1} and data["max_in_1s_window"] == 1
