"""The user's images: preflight scan (decode, sizes, duplicates, captions, trigger word, split, sha256 manifest) in
scan.py, and the synthetic demo/campaign datasets in demo.py.

May import: errors, paths. Nothing else of ours: everything here runs before any money is spent."""
