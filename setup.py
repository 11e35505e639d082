from setuptools import find_packages, setup

setup(
    name="distregistry",
    version="0.1.0",
    description="OCI Distribution registry daemon on Twisted, drop-in for registry:2",
    python_requires=">=3.11",
    # twisted/plugins ships without an __init__.py (it is Twisted's package), so it is named
    # explicitly; every distregistry package is found, so a new one cannot be forgotten.
    packages=find_packages(include=["distregistry", "distregistry.*"]) + ["twisted.plugins"],
    package_data={"distregistry.config": ["default.yml"]},
    install_requires=[
        "Twisted[tls]>=26.10",
        "klein>=24.8",
        "treq>=26.7",
        "PyYAML>=6.0",
        "attrs>=22.2",
        "zope.interface>=8",
        "bcrypt>=4",
        "PyJWT[crypto]>=2.8",
        "prometheus-client>=0.20",
        "botocore>=1.34",      # s3 driver: SigV4 signing
        "txredisapi>=1.6",     # redis blob-descriptor cache
        "google-auth>=2.20",   # gcs driver
    ],
    entry_points={"console_scripts": ["distregistry = distregistry.cli:main"]},
)
