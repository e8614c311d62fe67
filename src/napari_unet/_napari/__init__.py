"""Everything that touches napari or Qt lives here."""
