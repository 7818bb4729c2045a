"""docs/openapi.yaml is a valid OpenAPI 3.1 document that says what the code
does: its schemas are valid JSON Schema 2020-12, every reference resolves,
every example is valid against its own schema, every route the sources
list and every error code they send is in it. (Each e2e test then checks
every JSON answer it gets against it: harness.check_contract.)"""
import glob
import json
import os
import re

import jsonschema

import harness as h

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def walk(node, path=()):
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, path + (i,))


def resolve(doc, ref):
    assert ref.startswith("#/"), "only local references: %s" % ref
    node = doc
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, "unresolved $ref %s" % ref
        node = node[part]
    return node


def operations(doc):
    for template, item in doc["paths"].items():
        for m in METHODS:
            if m in item:
                yield template, m, item[m]


def source_routes():
    """The routes each http_*.c file lists in its top comment."""
    routes = set()
    for path in glob.glob(os.path.join(h.SRC, "gateway", "http_*.c")):
        head = open(path).read().split("*/", 1)[0]
        for m, rest in re.findall(r"^ \*\s+(GET|POST)\s+(.*)$", head, re.M):
            rest = rest.replace("{webhooks.path}", "/webhooks/extend")
            lead = re.match(r"(?:/[^\s,]+,\s*)*/[^\s,]+", rest)
            assert lead, "%s: route line %r" % (path, rest)
            for one in re.findall(r"/[^\s,]+", lead.group(0)):
                routes.add((m.lower(), re.sub(r"/ID(?=/|$)", "/{id}", one.split("?", 1)[0])))
    return routes


class OpenApiTest(h.GatewayTestCase):
    """docs/openapi.yaml against itself and the sources."""

    def test_document_is_openapi_3_1_with_valid_schemas(self):
        doc, _ = h.openapi()
        assert re.match(r"^3\.1\.\d+$", doc["openapi"]), doc["openapi"]
        assert doc["info"]["title"] and doc["info"]["version"]
        assert set(doc) <= {"openapi", "info", "jsonSchemaDialect", "servers", "paths", "webhooks",
                            "components", "security", "tags", "externalDocs"}, set(doc)
        for name, schema in doc["components"]["schemas"].items():
            jsonschema.Draft202012Validator.check_schema(h.openapi_schema(schema))
        for where, node in walk(doc):
            if isinstance(node, dict) and isinstance(node.get("$ref"), str):
                resolve(doc, node["$ref"])
        schemes = doc["components"]["securitySchemes"]
        for name, s in schemes.items():
            assert s["type"] in ("apiKey", "http", "mutualTLS", "oauth2", "openIdConnect"), name
            if s["type"] == "apiKey":
                assert s["in"] in ("header", "query", "cookie") and s["name"], name
        ids = set()
        for template, m, op in operations(doc):
            where = "%s %s" % (m.upper(), template)
            assert op.get("operationId") and op["operationId"] not in ids, where
            ids.add(op["operationId"])
            for req in op.get("security", doc.get("security", [])):
                assert set(req) <= set(schemes), where
            assert op["responses"], where
            for status, r in op["responses"].items():
                assert re.match(r"^[1-5]\d\d$", status), (where, status)
                r = resolve(doc, r["$ref"]) if "$ref" in r else r
                assert r.get("description"), (where, status)
            params = [resolve(doc, p["$ref"]) if "$ref" in p else p for p in op.get("parameters", [])]
            for p in params:
                assert p["in"] in ("path", "query", "header", "cookie") and "schema" in p, (where, p)
            declared = {p["name"] for p in params if p["in"] == "path"}
            assert declared == set(re.findall(r"\{([^}]+)\}", template)), (where, declared)

    def test_every_example_is_valid_against_its_schema(self):
        doc, _ = h.openapi()
        seen = 0
        for where, node in walk(doc):
            if isinstance(node, dict) and "schema" in node and "example" in node:
                h.openapi_validate(node["example"], node["schema"], "/".join(map(str, where)))
                seen += 1
        assert seen >= 20, seen

    def test_every_route_in_the_sources_is_documented(self):
        doc, _ = h.openapi()
        documented = {(m, t) for t, m, _ in operations(doc)}
        routes = source_routes()
        assert len(routes) >= 12, routes
        missing = {(m, p) for m, p in routes if (m, p) not in documented}
        assert not missing, "routes not in docs/openapi.yaml: %s" % sorted(missing)

    def test_every_error_code_the_sources_send_is_documented(self):
        text = open(h.OPENAPI_PATH).read()
        codes = set()
        for path in glob.glob(os.path.join(h.SRC, "gateway", "*.c")):
            src = open(path).read()
            codes |= set(re.findall(r'http_(?:send|reply)_error\([^;]*?\b\d{3}, "([a-z_]+)"', src, re.S))
            codes |= set(re.findall(r'api_error_set\([^;]*?\b\d{3}, "([a-z_]+)"', src, re.S))
        codes |= {"malformed_signature", "invalid_signature", "stale_timestamp", "future_timestamp"}
        assert len(codes) >= 25, codes
        missing = sorted(c for c in codes if not re.search(r"\b%s\b" % c, text))
        assert not missing, "error codes not in docs/openapi.yaml: %s" % missing

    def test_answers_are_checked_against_the_document(self):
        """The hook itself: a documented answer passes, a drifted one fails."""
        class R:
            headers = {"content-type": "application/json"}

        ok = R()
        ok.status, ok.body = 200, b'{"status":"ok"}'
        h.check_contract("public", "GET", "/healthz", ok)
        for status, body, path in ((200, b'{"status":"fine"}', "/healthz"), (418, b"{}", "/healthz"),
                                   (404, b'{"error":{}}', "/nowhere"),
                                   (404, json.dumps({"error": {"code": "x", "message": "y", "request_id": "z"}}).encode(),
                                    "/v1/deletions")):
            bad = R()
            bad.status, bad.body = status, body
            try:
                h.check_contract("public", "POST" if path == "/v1/deletions" else "GET", path, bad)
            except AssertionError:
                continue
            raise AssertionError("a drifted answer passed: %d %s %s" % (status, path, body))


if __name__ == "__main__":
    h.main()
