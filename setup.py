"""The one compiled part: hrnet_fast._jpeg (libjpeg-turbo: the loader's region decode, pack's restart transcode).

Optional: without libjpeg's headers (libjpeg62-turbo-dev / libjpeg-turbo-devel) the build is skipped
with a warning and the loader decodes whole images through simplejpeg instead. Everything else is
in pyproject.toml.
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("hrnet_fast._jpeg", ["hrnet_fast/_jpeg.c"],
                             libraries=["jpeg"], optional=True)])
