"""Stand-in for Colab's ``google.colab`` (see tests/helpers/fake_colab/README.md)."""

from google.colab import drive, output, runtime, userdata  # noqa: F401
