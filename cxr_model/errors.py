"""Errors the pipeline raises on purpose: each carries one sentence a user can act on."""


class CxrError(Exception):
    """A problem the user can fix; the CLI prints its message without a traceback."""


class ConfigError(CxrError):
    """params.yaml or an override is wrong."""


class DataError(CxrError):
    """The landing folder or an image in it is unusable."""


class ValidationFailed(CxrError):
    """A critical data expectation failed, so training must not start."""


class MissingInput(CxrError):
    """A step ran before the step that writes its input."""
