//! Labeling web app.
