"""One mechanism for every family of named, configurable objects (layers, initializers, optimizers, losses,
learning-rate schedules): a Registry maps names to classes and turns Keras's `{"class_name", "config"}`
dicts into instances and back.

    INITIALIZERS = Registry("initializer", Initializer)

    @INITIALIZERS.register("he_normal")      # the class name "HeNormal" always works; short names are extra
    class HeNormal(Initializer): ...

    INITIALIZERS.get("he_normal"), INITIALIZERS.get({"class_name": "HeNormal", "config": {"seed": 1}})

A class builds from its config with `cls.from_config(config)` (Keras's rule) and describes itself with
`get_config()`. Errors are ValueError/TypeError naming the argument, what was expected and what was received.
"""


class Registry:
    def __init__(self, kind, base, case_insensitive=True):
        self.kind = kind  # used in messages: "optimizer", "loss", ...
        self.base = base
        self._case_insensitive = case_insensitive
        self._classes = {}  # class name -> class
        self._names = {}  # short name ("adam", "he_normal") -> class

    def register(self, *names):
        """Class decorator: known by its class name and the short `names` (the first is its canonical one)."""

        def add(cls):
            self._classes[cls.__name__] = cls
            for name in names:
                self._names[self._key(name)] = cls
            return cls

        return add

    def _key(self, name):
        return name.lower() if self._case_insensitive else name

    def names(self):
        """The short names, in registration order."""
        return list(self._names)

    def class_names(self):
        return sorted(self._classes)

    def short_name(self, obj):
        """The canonical short name of `obj`'s exact class, or None."""
        return next((name for name, cls in self._names.items() if cls is type(obj)), None)

    def class_for(self, class_name, argument=None):
        if not isinstance(class_name, str) or class_name not in self._classes:
            raise ValueError(f"{argument or 'class_name'}: expected one of the {self.kind} types "
                             f"{', '.join(self.class_names())}; got {class_name!r}")
        return self._classes[class_name]

    def get(self, identifier, argument=None):
        """An instance from an instance, a short or class name (default arguments), or a config dict."""
        argument = argument or self.kind
        if isinstance(identifier, self.base):
            return identifier
        if isinstance(identifier, str):
            cls = self._names.get(self._key(identifier)) or self._classes.get(identifier)
            if cls is not None:
                return cls()
        elif isinstance(identifier, dict):
            return self.deserialize(identifier, argument)
        raise ValueError(f"{argument}: expected one of {', '.join(map(repr, self.names()))}, an instance of "
                         f"{self.base.__name__} or its config dict, got {identifier!r}")

    def serialize(self, obj):
        return {"class_name": type(obj).__name__, "config": obj.get_config()}

    def deserialize(self, spec, argument=None):
        """An instance from {"class_name": ..., "config": {...}}; ValueError on unknown types or bad configs."""
        argument = argument or self.kind
        if not isinstance(spec, dict):
            raise TypeError(f"{argument}: expected a dict with 'class_name' and 'config', got {spec!r}")
        cls = self.class_for(spec.get("class_name"), argument)
        config = spec.get("config") or {}
        if not isinstance(config, dict):
            raise TypeError(f"{argument}: expected a dict under 'config', got {config!r}")
        try:
            return cls.from_config(dict(config))
        except TypeError as exc:  # unknown/missing constructor arguments and wrongly typed values
            raise ValueError(f"{argument}: bad config for {cls.__name__}: {exc}") from None
