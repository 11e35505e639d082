"""The ``auth`` section: exactly one access-controller type, or none."""

from .schema import NOT_SUPPORTED

# registry:2's access controllers; `none` (any case, as registry:2 compares it) means no auth.
KINDS = ("htpasswd", "token", "silly", "none")


def parse_auth(root):
    """None: no access control (``auth`` absent or ``none``); no other type is implemented yet."""
    node = root["auth"].with_shorthand()
    kinds = list(node.as_mapping())
    if len(kinds) > 1:
        raise node.error(f"must provide exactly one type. Provided: [{' '.join(kinds)}]", below=True)
    if not kinds or kinds[0] == "" or kinds[0].lower() == "none":
        return None
    kind = node[kinds[0]]
    if kind.keypath in NOT_SUPPORTED:
        raise kind.not_supported()
    raise kind.error(f"unknown auth type; expected one of {', '.join(KINDS)}")
