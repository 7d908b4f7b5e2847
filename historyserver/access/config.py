"""The server's access settings, checked and loaded once at start (every problem is an AccessConfigError)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

from historyserver.access.principal import AccessConfigError, Principal
from historyserver.access.tokens import CookieSigner, TokenTable

AUTH_MODES = ("none", "token", "proxy")
AUTHZ_MODES = ("none", "file", "kubernetes")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class AccessConfig:
    auth: str = "none"
    tokens: TokenTable | None = None
    cookies: CookieSigner | None = None
    user_header: str = "X-Forwarded-User"
    groups_header: str = "X-Forwarded-Groups"
    trusted_proxies: tuple[Network, ...] = ()
    policy: Callable[[Principal, str], bool] | None = None  # None: every namespace

    def trusts(self, peer: str | None) -> bool:
        """Whether the socket peer is one of the trusted proxies."""
        try:
            address = ipaddress.ip_address(peer or "")
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.trusted_proxies)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(settings) -> None:
    """Refuse to serve without authentication on an address other machines can reach."""
    if settings.auth == "none" and not is_loopback(settings.host) and not settings.insecure_no_auth:
        raise AccessConfigError(
            f"--host {settings.host} is reachable from other machines and --auth is none: anyone who can reach it "
            "would read every namespace's sessions, logs and metrics. Use --auth token or --auth proxy (README, "
            '"Authentication and access by namespace"), bind to 127.0.0.1, or, if something in front of this '
            "server already authenticates every request, say so with --insecure-no-auth"
        )


def parse_networks(text: str) -> tuple[Network, ...]:
    networks = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise AccessConfigError(
                f"--auth-trusted-proxies: {part!r} is not an address or CIDR (e.g. 127.0.0.1/32, 10.0.0.0/8, ::1/128)"
            ) from None
    return tuple(networks)


def load(settings) -> AccessConfig:
    """The access configuration of ServerSettings, with its files read (raises AccessConfigError)."""
    if settings.auth not in AUTH_MODES:
        raise AccessConfigError(f"--auth {settings.auth!r} is not one of {', '.join(AUTH_MODES)}")
    if settings.authz not in AUTHZ_MODES:
        raise AccessConfigError(f"--authz {settings.authz!r} is not one of {', '.join(AUTHZ_MODES)}")
    check_exposure(settings)
    config = AccessConfig(auth=settings.auth)
    if settings.auth_token_file and settings.auth != "token":
        raise AccessConfigError("--auth-token-file is read only with --auth token")
    if settings.auth == "token":
        if not settings.auth_token_file:
            raise AccessConfigError(
                '--auth token needs --auth-token-file PATH: a file of token,user,uid[,"groups"] '
                "lines (the format of kube-apiserver's --token-auth-file)"
            )
        if settings.auth_cookie_max_age < 60:
            raise AccessConfigError(
                f"--auth-cookie-max-age must be at least 60 seconds, got {settings.auth_cookie_max_age}"
            )
        config.tokens = TokenTable.from_file(settings.auth_token_file)
        config.cookies = CookieSigner(settings.auth_cookie_max_age)
    if settings.auth == "proxy":
        for flag, value in (
            ("--auth-user-header", settings.auth_user_header),
            ("--auth-groups-header", settings.auth_groups_header),
        ):
            if not _HEADER.match(value):
                raise AccessConfigError(f"{flag} {value!r} is not an HTTP header name")
        config.user_header, config.groups_header = settings.auth_user_header, settings.auth_groups_header
        config.trusted_proxies = parse_networks(settings.auth_trusted_proxies)
        if not config.trusted_proxies:
            raise AccessConfigError(
                "--auth proxy needs --auth-trusted-proxies: the addresses (CIDRs) of the proxy "
                "that sets the user headers"
            )
    if settings.authz_file and settings.authz != "file":
        raise AccessConfigError("--authz-file is read only with --authz file")
    if settings.authz != "none" and settings.auth == "none":
        raise AccessConfigError(
            f"--authz {settings.authz} decides by user and group, but --auth none identifies "
            "nobody: add --auth token or --auth proxy"
        )
    if settings.authz == "file":
        from historyserver.access.policies import FileAuthz

        if not settings.authz_file:
            raise AccessConfigError(
                "--authz file needs --authz-file PATH: YAML mapping users and groups to "
                "namespaces, e.g. users: {alice: [team-a]}"
            )
        config.policy = FileAuthz.from_file(settings.authz_file)
    elif settings.authz == "kubernetes":
        from historyserver.access.policies import KubernetesAuthz
        from historyserver.live.kube import KubernetesUnavailable, LiveSettings

        if settings.authz_cache_ttl < 0:
            raise AccessConfigError(f"--authz-cache-ttl must not be negative, got {settings.authz_cache_ttl}")
        try:
            live = LiveSettings.from_settings(settings)
        except KubernetesUnavailable as e:
            raise AccessConfigError(f"--authz kubernetes: {e}") from None
        if live.mode == "off":
            raise AccessConfigError(
                "--authz kubernetes asks the Kubernetes API, which is off here: set --kubernetes "
                "(RAYHISTORY_KUBERNETES) to in-cluster (in a pod) or kubeconfig[:PATH]"
            )
        config.policy = KubernetesAuthz(live, settings.authz_cache_ttl)
    return config
