"""Plugin class: toolbar, Raster menu, search dock, describe tool, Processing provider, engine lifetime."""

from __future__ import annotations

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .engine_process import get_manager, shutdown_manager
from .settings import resource_path

MENU = "&RSITR text search"


class RsitrPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.dock = None
        self.toolbar = None
        self.actions: list[QAction] = []
        self.describe = None
        self.describe_tool = None
        self.setup = None
        self._context_hooked = False

    # ------------------------------------------------------------------ Processing
    def initProcessing(self):  # noqa: N802 - called by QGIS (also by qgis_process)
        if self.provider is None:
            from .processing.provider import RsitrProvider

            provider = RsitrProvider()
            # on failure (an 'rsitr' provider is already registered) the registry deletes the new one
            self.provider = provider if QgsApplication.processingRegistry().addProvider(provider) else None

    # ------------------------------------------------------------------ GUI
    def initGui(self):  # noqa: N802
        self.initProcessing()
        from .describe_tool import DescribeController, DescribeMapTool
        from .dock import SearchDock

        manager = get_manager()
        icon = QIcon(resource_path("icons", "rsitr.svg"))
        self.toolbar = self.iface.addToolBar("RSITR")
        self.toolbar.setObjectName("rsitr_toolbar")

        self.dock = SearchDock(manager, self.iface, self.iface.mainWindow())
        self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.hide()
        self.action_dock = self.dock.toggleViewAction()
        self.action_dock.setIcon(icon)
        self.action_dock.setText("RSITR text search panel")
        self.action_dock.setObjectName("rsitr_action_panel")
        self._add(self.action_dock)

        self.describe = DescribeController(self.iface, manager)
        self.describe_tool = DescribeMapTool(self.iface.mapCanvas(), self.describe)
        self.action_describe = QAction(
            QIcon(resource_path("icons", "rsitr.svg")), "RSITR describe tile", self.iface.mainWindow()
        )
        self.action_describe.setObjectName("rsitr_action_describe")
        self.action_describe.setCheckable(True)
        self.action_describe.triggered.connect(self._toggle_describe_tool)
        self.describe_tool.setAction(self.action_describe)
        self._add(self.action_describe)

        self.action_settings = QAction("RSITR settings...", self.iface.mainWindow())
        self.action_settings.setObjectName("rsitr_action_settings")
        self.action_settings.triggered.connect(self.show_settings)
        self.iface.addPluginToRasterMenu(MENU, self.action_settings)
        self.actions.append(self.action_settings)
        self._init_setup_actions(manager)

        canvas = self.iface.mapCanvas()
        if hasattr(canvas, "contextMenuAboutToShow"):
            canvas.contextMenuAboutToShow.connect(self._on_context_menu)
            self._context_hooked = True

    def _init_setup_actions(self, manager) -> None:
        """Raster > RSITR text search > Set up engine… / Repair / update engine / Remove engine and models."""
        from .setup.dialog import SetupController, install_offer

        self.setup = SetupController(self.iface, manager)
        install_offer(self.setup)
        for name, text, slot in (
            ("rsitr_action_setup", "Set up engine…", lambda: self.setup.open_dialog()),
            ("rsitr_action_repair", "Repair / update engine", lambda: self.setup.open_dialog(force=True)),
            ("rsitr_action_remove", "Remove engine and models", lambda: self.setup.remove()),
        ):
            action = QAction(text, self.iface.mainWindow())
            action.setObjectName(name)
            action.triggered.connect(lambda _checked=False, f=slot: f())
            self.iface.addPluginToRasterMenu(MENU, action)
            self.actions.append(action)

    def _add(self, action: QAction) -> None:
        self.toolbar.addAction(action)
        self.iface.addPluginToRasterMenu(MENU, action)
        self.actions.append(action)

    def _toggle_describe_tool(self, checked: bool) -> None:
        canvas = self.iface.mapCanvas()
        if checked:
            canvas.setMapTool(self.describe_tool)
        elif canvas.mapTool() is self.describe_tool:
            canvas.unsetMapTool(self.describe_tool)

    def _on_context_menu(self, menu, event) -> None:
        point = event.mapPoint()
        action = menu.addAction(QIcon(resource_path("icons", "rsitr.svg")), "RSITR: describe tile here")
        action.triggered.connect(lambda _checked=False, p=point: self.describe.describe_at(p))

    def show_settings(self) -> None:
        from .settings_dialog import SettingsDialog

        SettingsDialog(get_manager().settings, self.iface.mainWindow()).exec()

    def unload(self):
        try:
            self._unload_gui()
        finally:
            if self.provider is not None:
                try:
                    QgsApplication.processingRegistry().removeProvider(self.provider)
                except RuntimeError:
                    pass
                self.provider = None
            shutdown_manager()  # always: the engine child must not outlive the plugin

    def _unload_gui(self):
        canvas = self.iface.mapCanvas()
        if self._context_hooked:
            try:
                canvas.contextMenuAboutToShow.disconnect(self._on_context_menu)
            except (TypeError, RuntimeError):
                pass
        if self.describe_tool is not None and canvas.mapTool() is self.describe_tool:
            canvas.unsetMapTool(self.describe_tool)
        if self.describe is not None:
            self.describe.unload()
        from .setup import offer

        offer.set_setup_callback(None)
        if self.setup is not None and self.setup.task is not None:
            self.setup.task.cancel()  # kills a running pip/download; the earlier engine stays as it was
        for action in self.actions:
            self.iface.removePluginRasterMenu(MENU, action)
        self.actions = []
        if self.toolbar is not None:
            self.toolbar.deleteLater()
            self.toolbar = None
        if self.dock is not None:
            self.dock.stop_jobs()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
