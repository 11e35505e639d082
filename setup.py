from setuptools import setup

setup(
    name="distregistry",
    version="0.1.0",
    description="OCI Distribution registry daemon on Twisted, drop-in for registry:2",
    python_requires=">=3.11",
    # Explicit list: twisted/plugins must ship without an __init__.py (it is Twisted's package).
    packages=[
        "distregistry",
        "distregistry.api",
        "distregistry.auth",
        "distregistry.config",
        "distregistry.gc",
        "distregistry.manifest",
        "distregistry.notifications",
        "distregistry.registry",
        "distregistry.storage",
        "distregistry.storage.cache",
        "distregistry.storage.driver",
        "twisted.plugins",
    ],
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
    ],
    entry_points={"console_scripts": ["distregistry = distregistry.cli:main"]},
)
