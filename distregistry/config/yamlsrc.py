"""YAML as registry:2 (gopkg.in/yaml.v2) reads it, on top of PyYAML's safe loader.

Differences from plain ``yaml.safe_load``, each mirroring yaml.v2 decoding into Go types:
mapping keys are their text (``on:`` is the key "on", not True); numbers remember their text,
because a Go string field receives the text as written (``secret: 0123`` is "0123", not 83);
timestamps stay strings. Duplicate keys (last one wins, as in yaml.v2) are reported.
"""

import yaml

from .errors import ConfigError

_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"


class YamlInt(int):
    """An int that keeps its YAML text in ``.text``."""


class YamlFloat(float):
    """A float that keeps its YAML text in ``.text``."""


def scalar_text(value):
    """The text a Go string field would get for the scalar *value*."""
    return getattr(value, "text", None) or str(value)


class _Loader(yaml.SafeLoader):
    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream):
        super().__init__(stream)
        self.duplicates = []

    def construct_yaml_int(self, node):
        value = YamlInt(super().construct_yaml_int(node))
        value.text = node.value
        return value

    def construct_yaml_float(self, node):
        value = YamlFloat(super().construct_yaml_float(node))
        value.text = node.value
        return value

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "mapping keys must be plain scalars", key_node.start_mark
                )
            if key_node.tag != _MERGE:
                if key_node.value in seen:
                    self.duplicates.append(
                        f"line {key_node.start_mark.line + 1}: duplicate key {key_node.value!r}, "
                        "the last one wins"
                    )
                seen.add(key_node.value)
        self.flatten_mapping(node)
        return {k.value: self.construct_object(v, deep=deep) for k, v in node.value}


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_yaml_float)


def load_yaml(text, source):
    """``(data, warnings)`` for one YAML document; ``ConfigError`` naming the line if invalid."""
    loader = _Loader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise ConfigError(
            source, None, f"invalid YAML: {e.problem or e.context}",
            line=mark.line + 1 if mark else None,
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(source, None, f"invalid YAML: {e}") from None
    finally:
        loader.dispose()
    return data, [f"{source}: {d}" for d in loader.duplicates]


def parse_value(text):
    """The YAML value of one environment override; ``ValueError`` if it is not YAML."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise ValueError(f"invalid YAML: {getattr(e, 'problem', None) or e}") from None
    finally:
        loader.dispose()
