"""SubjectAccessReviews on the Kubernetes API test server (tests/servers/kube_api.py): POST
/apis/authorization.k8s.io/v1/subjectaccessreviews, checked as kube-apiserver validates it and answered from the
AccessRules a test gives, as the RBAC authorizer answers (a rule that denies answers as a webhook authorizer may)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.servers.kube_api_status import USER, status_object

if TYPE_CHECKING:  # the server imports this module; its fields are read at call time
    from tests.servers.kube_api import KubeAPI

REVIEW_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
REVIEW_SPEC_KEYS = {"user", "groups", "uid", "extra", "resourceAttributes", "nonResourceAttributes"}
RESOURCE_ATTRIBUTE_KEYS = {
    "namespace",
    "verb",
    "group",
    "version",
    "resource",
    "subresource",
    "name",
    "fieldSelector",
    "labelSelector",
}


@dataclass(frozen=True)
class AccessRule:
    """A binding, as RBAC would hold it: `kind` User or Group `name` may use `verbs` on `resource` in `api_group`
    in `namespace` ("*": every namespace, a ClusterRoleBinding). `allow=False` is an explicit denial."""

    kind: str
    name: str
    namespace: str
    verbs: tuple[str, ...] = ("get", "list", "watch")
    api_group: str = "ray.io"
    resource: str = "rayclusters"
    allow: bool = True


def review(api: KubeAPI, body: bytes, content_type: str) -> tuple[int, Any]:
    """The answer to a SubjectAccessReview POSTed by an authenticated caller; each body received is kept in
    `api.reviews`, so a test sees exactly what was sent."""
    # kube-apiserver reads a body without Content-Type as its first serializer's, JSON.
    if content_type.split(";")[0].strip() not in ("", "application/json"):
        return 415, status_object(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json",
            {},
        )
    try:
        received = json.loads(body)
    except ValueError as e:
        return 400, status_object(400, "BadRequest", f"the request body is not JSON: {e}")
    api.reviews.append(received)
    if not api.may_review:
        return 403, status_object(
            403,
            "Forbidden",
            (
                f'subjectaccessreviews.authorization.k8s.io is forbidden: User "{USER}" cannot create resource '
                '"subjectaccessreviews" in API group "authorization.k8s.io" at the cluster scope'
            ),
            {"group": "authorization.k8s.io", "kind": "subjectaccessreviews"},
        )
    problem = review_problem(received)
    if problem:
        status = 422 if problem.startswith("spec") else 400
        return status, status_object(status, "Invalid" if status == 422 else "BadRequest", problem)
    spec = received["spec"]
    return 201, {
        "kind": "SubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": spec,
        "status": decide(api.access_rules, spec),
    }


def decide(rules: list[AccessRule], spec: dict[str, Any]) -> dict[str, Any]:
    """The review's status: a denying rule wins over a granting one; allowed false and no reason when none match."""
    attributes = spec["resourceAttributes"]
    subjects = {("User", spec.get("user") or "")} | {("Group", g) for g in spec.get("groups") or []}
    matching = [
        r
        for r in rules
        if (r.kind, r.name) in subjects
        and r.namespace in ("*", attributes.get("namespace", ""))
        and attributes.get("verb") in r.verbs
        and attributes.get("group", "") == r.api_group
        and attributes.get("resource") == r.resource
    ]
    denial = next((r for r in matching if not r.allow), None)
    grant = next((r for r in matching if r.allow), None)
    if denial is not None:
        return {
            "allowed": False,
            "denied": True,
            "reason": f'denied by policy for {denial.kind} "{denial.name}"',
        }
    if grant is not None:
        binding = (
            f'ClusterRoleBinding "{grant.name}-ray-viewer"'
            if grant.namespace == "*"
            else f'RoleBinding "{grant.name}-ray-viewer/{grant.namespace}"'
        )
        return {
            "allowed": True,
            "reason": f'RBAC: allowed by {binding} of ClusterRole "ray-viewer" to {grant.kind} "{grant.name}"',
        }
    return {"allowed": False}


def review_problem(review: Any) -> str | None:
    """What kube-apiserver would refuse in a SubjectAccessReview (and unknown fields, which it would drop)."""
    if not isinstance(review, dict):
        return "the body is not an object"
    unknown = set(review) - {"apiVersion", "kind", "metadata", "spec"}
    if unknown:
        return f"unknown fields {sorted(unknown)} in SubjectAccessReview"
    if (review.get("apiVersion"), review.get("kind")) != ("authorization.k8s.io/v1", "SubjectAccessReview"):
        return (
            f"the object is {review.get('kind')!r} of {review.get('apiVersion')!r}, not SubjectAccessReview of "
            "authorization.k8s.io/v1"
        )
    spec = review.get("spec")
    if not isinstance(spec, dict):
        return "spec: Required value"
    unknown = set(spec) - REVIEW_SPEC_KEYS
    if unknown:
        return f"unknown fields {sorted(unknown)} in SubjectAccessReview.spec"
    if ("resourceAttributes" in spec) == ("nonResourceAttributes" in spec):
        return (
            "spec.resourceAttributes: Invalid value: exactly one of nonResourceAttributes or resourceAttributes "
            "must be specified"
        )
    if not spec.get("user") and not spec.get("groups"):
        return 'spec.user: Invalid value: "": at least one of user or group must be specified'
    attributes = spec.get("resourceAttributes")
    if isinstance(attributes, dict) and set(attributes) - RESOURCE_ATTRIBUTE_KEYS:
        return f"unknown fields {sorted(set(attributes) - RESOURCE_ATTRIBUTE_KEYS)} in spec.resourceAttributes"
    return None
