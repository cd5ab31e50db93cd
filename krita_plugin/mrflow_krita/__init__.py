"""MrFlow for Krita: fill canvases and selections with MrFlow staged generation.

Krita imports this package when the plugin is enabled, and then it registers the docker and
the actions. Imported anywhere else (tests, tools), it registers nothing.
"""


def _inside_krita() -> bool:
    try:
        import krita  # noqa: F401

        from mrflow_krita.qt import QtCore
    except ImportError:
        return False
    return QtCore.QCoreApplication.applicationName() == "krita"


if _inside_krita():
    from mrflow_krita.plugin import register

    register()
