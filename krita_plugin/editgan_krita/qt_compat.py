"""The only place that imports Qt: Krita 5 ships PyQt5, Krita 6 moves to PyQt6.

Whichever binding the host already loaded wins, so the plugin never mixes two Qt versions in one
process. PyQt6 only accepts scoped enum names; the constants below hide that difference.
"""

import sys

if "PyQt6" in sys.modules and "PyQt5" not in sys.modules:
    from PyQt6 import QtCore, QtGui, QtWidgets  # noqa: F401
    QT6 = True
else:
    try:
        from PyQt5 import QtCore, QtGui, QtWidgets  # noqa: F401
        QT6 = False
    except ImportError:  # a Krita 6 build without PyQt5
        from PyQt6 import QtCore, QtGui, QtWidgets  # noqa: F401
        QT6 = True

QObject = QtCore.QObject
QTimer = QtCore.QTimer
QSocketNotifier = QtCore.QSocketNotifier
Qt = QtCore.Qt
pyqtSignal = QtCore.pyqtSignal
QColor = QtGui.QColor
QImage = QtGui.QImage
QPixmap = QtGui.QPixmap

QWidget = QtWidgets.QWidget
QVBoxLayout = QtWidgets.QVBoxLayout
QHBoxLayout = QtWidgets.QHBoxLayout
QGridLayout = QtWidgets.QGridLayout
QLabel = QtWidgets.QLabel
QLineEdit = QtWidgets.QLineEdit
QPushButton = QtWidgets.QPushButton
QCheckBox = QtWidgets.QCheckBox
QToolButton = QtWidgets.QToolButton
QSpinBox = QtWidgets.QSpinBox
QSlider = QtWidgets.QSlider
QComboBox = QtWidgets.QComboBox
QListWidget = QtWidgets.QListWidget
QListWidgetItem = QtWidgets.QListWidgetItem
QProgressBar = QtWidgets.QProgressBar
QInputDialog = QtWidgets.QInputDialog
QGroupBox = QtWidgets.QGroupBox
QMenu = QtWidgets.QMenu
QColorDialog = QtWidgets.QColorDialog


def _enum(scope, scoped_name: str, name: str):
    """``scope.ScopedEnum.Name`` on PyQt6, ``scope.Name`` on PyQt5."""
    return getattr(getattr(scope, scoped_name), name) if QT6 else getattr(scope, name)


NOTIFIER_READ = _enum(QSocketNotifier, "Type", "Read")
CHECKED = _enum(Qt, "CheckState", "Checked")
UNCHECKED = _enum(Qt, "CheckState", "Unchecked")
ITEM_CHECKABLE = _enum(Qt, "ItemFlag", "ItemIsUserCheckable")
ITEM_ENABLED = _enum(Qt, "ItemFlag", "ItemIsEnabled")
HORIZONTAL = _enum(Qt, "Orientation", "Horizontal")
USER_ROLE = _enum(Qt, "ItemDataRole", "UserRole")
IMAGE_RGB888 = _enum(QImage, "Format", "Format_RGB888")
CUSTOM_CONTEXT_MENU = _enum(Qt, "ContextMenuPolicy", "CustomContextMenu")
