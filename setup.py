"""The one compiled part: hrnet_fast.data._crop (region decode of JPEGs with libjpeg-turbo).

Optional: without libjpeg's headers (libjpeg62-turbo-dev / libjpeg-turbo-devel) the build is skipped
with a warning and the loader decodes whole images through simplejpeg instead. Everything else is
in pyproject.toml.
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("hrnet_fast.data._crop", ["hrnet_fast/data/_crop.c"],
                             libraries=["jpeg"], optional=True)])
