"""What the pages share and nothing below imports: Streamlit caches, page actions, Altair charts."""
