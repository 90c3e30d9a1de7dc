"""The dashboard's Plotly figures: class probabilities, the confusion matrix, training curves."""

from __future__ import annotations

import base64

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from metdata.predict import prediction

RIGHT, WRONG, ACCENT, MUTED = "#1a7f37", "#cf222e", "#0b5cad", "#9aa7b4"


def data_uri(pixels: np.ndarray) -> str:
    """An RGB array as a PNG ``data:`` URI for an ``<img>``."""
    return "data:image/png;base64," + base64.b64encode(prediction.png(pixels)).decode()


def probability_figure(classes: list[str], probabilities: np.ndarray) -> go.Figure:
    """Every class's probability as horizontal bars, best on top, the top one highlighted."""
    order = np.argsort(probabilities, kind="stable")  # plotly draws the first bar at the bottom
    top = int(np.argmax(probabilities))
    figure = go.Figure(
        go.Bar(
            x=[float(probabilities[i]) for i in order],
            y=[classes[i] for i in order],
            orientation="h",
            marker_color=[ACCENT if i == top else MUTED for i in order],
            text=[f"{probabilities[i]:.1%}" for i in order],
            textposition="auto",
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    figure.update_layout(
        title="Probability of each class",
        xaxis={"range": [0, 1.02], "tickformat": ".0%", "dtick": 0.25},
        height=max(220, 60 + 36 * len(classes)),
        margin={"l": 10, "r": 10, "t": 40, "b": 30},
        template="plotly_white",
        font={"size": 14},
        yaxis={"automargin": True},
    )
    return figure


def confusion_figure(matrix: np.ndarray, classes: list[str]) -> go.Figure:
    """The confusion matrix as a heat map (row true, column predicted), counts written in the cells."""
    figure = go.Figure(
        go.Heatmap(
            z=matrix.tolist(),
            x=classes,
            y=classes,
            colorscale="Blues",
            text=matrix.tolist(),
            texttemplate="%{text}",
            hovertemplate="true %{y}, predicted %{x}: %{z} painting(s)<extra>click for them</extra>",
            showscale=False,
        )
    )
    figure.update_layout(
        title="Validation paintings: true class (rows) vs prediction (columns)",
        xaxis={"title": "predicted", "side": "bottom", "automargin": True},
        yaxis={"title": "true", "autorange": "reversed", "automargin": True},
        height=max(320, 120 + 60 * len(classes)),
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        template="plotly_white",
        font={"size": 14},
    )
    return figure


def curves_figure(history: list[dict]) -> go.Figure:
    """Accuracy and loss per epoch, training and validation, side by side."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("accuracy", "loss"))
    epochs = [h.get("epoch", i) + 1 for i, h in enumerate(history)]
    for col, metric in enumerate(("accuracy", "loss"), start=1):
        for name, key, colour in (("training", metric, MUTED), ("validation", f"val_{metric}", ACCENT)):
            if any(key in h for h in history):
                figure.add_trace(
                    go.Scatter(
                        x=epochs,
                        y=[h.get(key) for h in history],
                        name=f"{name} {metric}",
                        line={"color": colour},
                        mode="lines+markers",
                    ),
                    row=1,
                    col=col,
                )
    figure.update_xaxes(title_text="epoch")
    figure.update_layout(
        height=360,
        template="plotly_white",
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend={"orientation": "h", "y": -0.28, "x": 0},
    )
    return figure


def empty(message: str) -> go.Figure:
    figure = go.Figure()
    figure.update_layout(
        template="plotly_white",
        height=220,
        xaxis={"visible": False},
        yaxis={"visible": False},
        annotations=[{"text": message, "showarrow": False, "font": {"size": 15, "color": "#57606a"}}],
    )
    return figure
