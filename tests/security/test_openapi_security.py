"""The OpenAPI document says which operations need a client JWT, and the running service agrees."""

from __future__ import annotations

from tests.security.conftest import ISS, SecureClient
from tests.security.keys import ClientKey, jwks_of

SERVICE_ID = "back-knee-risk-factors"


def test_every_operation_needs_a_jwt_exactly_when_the_document_says_so(secure_client: SecureClient, es384_key: ClientKey) -> None:
    with secure_client([{"iss": ISS, "jwks": jwks_of(es384_key)}]) as client:
        document = client.get("/openapi.json").json()
        scheme = document["components"]["securitySchemes"]["cdsClientJwt"]
        assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
        rule_id = client.get("/rules").json()["rules"][0]["id"]
        checked = {}
        for path, operations in document["paths"].items():
            url = path.format(service_id=SERVICE_ID, rule_id=rule_id)
            for method, operation in operations.items():
                declared = operation.get("security") == [{"cdsClientJwt": []}]
                status = client.request(method.upper(), url, json={}).status_code  # no Authorization header
                assert (status == 401) == declared, f"{method.upper()} {path}: answered {status}, JWT declared: {declared}"
                checked[f"{method.upper()} {path}"] = declared
    assert checked["GET /cds-services"] and checked["POST /cds-services/{service_id}"]
    assert checked["POST /cds-services/{service_id}/feedback"]
    assert not checked["GET /rules/{rule_id}"] and not checked["GET /health/ready"] and not checked["GET /metrics"]
