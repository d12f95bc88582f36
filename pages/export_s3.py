"""The static export's S3 target: a page's documents as objects of an S3-compatible bucket
(AWS S3, MinIO, R2, ...), keyed by their URL path under an optional prefix
(`p/<slug>/index.html`, `p/<slug>/history`, `p/<slug>/api/v2/summary.json`), each with its
Content-Type and Cache-Control, so the bucket (or a CDN in front of it) serves the page as
Beacon would. See `pages.export` for when it runs; docs/static-export.md for the setup.

boto3 is an optional dependency (`pip install 'beacon[s3]'`): imported only when a bucket
is configured (engine.settings refuses a bucket without it).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from engine.settings import Settings

from .export import STATE_DIR, ExportFile, Manifest, asset_etag

log = logging.getLogger(__name__)

#: Uploads of one render in flight at once (each document is its own PUT).
PARALLEL_PUTS = 8


class S3Target:
    """Objects in one bucket under `prefix`, with a manifest per page beside them
    (`<prefix>.beacon/pages/<id>.json`) saying what was put, by ETag."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self._pool = ThreadPoolExecutor(PARALLEL_PUTS, thread_name_prefix="beacon-s3-export")

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Target:
        import boto3
        from botocore.config import Config

        options: dict[str, Any] = {
            # A slow bucket must not hold a render worker for long: fail, log, and let the
            # next render write what was missed.
            "config": Config(
                connect_timeout=5,
                read_timeout=15,
                retries={"max_attempts": 3, "mode": "standard"},
                max_pool_connections=PARALLEL_PUTS * 2,
            ),
            "region_name": settings.export_s3_region or "us-east-1",
        }
        if settings.export_s3_endpoint_url:
            options["endpoint_url"] = settings.export_s3_endpoint_url
        if settings.export_s3_access_key_id:
            options["aws_access_key_id"] = settings.export_s3_access_key_id
            options["aws_secret_access_key"] = (
                settings.export_s3_secret_access_key.get_secret_value()
            )
        client = boto3.session.Session().client("s3", **options)
        return cls(client, settings.export_s3_bucket, settings.export_s3_prefix)

    def key(self, slug: str, name: str) -> str:
        return f"{self.prefix}p/{slug}/{name}"

    def _manifest_key(self, page_id: int) -> str:
        return f"{self.prefix}{STATE_DIR}/pages/{page_id}.json"

    def manifest(self, page_id: int) -> Manifest | None:
        from botocore.exceptions import ClientError

        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._manifest_key(page_id))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return Manifest.parse(answer["Body"].read())

    def has_asset(self, old: Manifest | None, slug: str, name: str) -> bool:
        # Under another slug the old objects go (publish): the asset must be put again.
        return (
            old is not None
            and old.slug == slug
            and old.files.get(self.key(slug, name)) == asset_etag(name)
        )

    def publish(
        self,
        page_id: int,
        slug: str,
        files: list[ExportFile],
        rendered_at: datetime,
        old: Manifest | None,
    ) -> None:
        stamp = rendered_at.isoformat()
        if old is not None and old.rendered_at > stamp:
            return  # a later render of the page got here first
        if old is not None and old.slug != slug:
            self._delete_prefix(self.key(old.slug, ""))
        before = old.files if old is not None and old.slug == slug else {}
        puts, written = [], {}
        for item in files:
            key = self.key(slug, item.name)
            if before.get(key) != item.etag:
                if item.asset and not item.body:
                    continue  # listed as present but not in the manifest: read it next time
                puts.append((key, item))
            written[key] = item.etag
        # list(): every upload's error surfaces here, before the manifest claims it.
        list(self._pool.map(lambda job: self._put(*job), puts))
        stale = set(before.keys() - written.keys())
        if old is None or old.slug != slug:
            # Without this page's manifest for the slug, what else is under it is no one's
            # this page knows (another page's that had it, whose removal failed): it goes.
            stale |= set(self._keys(self.key(slug, ""))) - written.keys()
        if stale:
            self._delete(sorted(stale))
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._manifest_key(page_id),
            Body=Manifest(slug, stamp, written).dump(),
            ContentType="application/json",
            CacheControl="no-store",
        )
        log.debug("exported page %r to s3://%s: %d objects put", slug, self.bucket, len(puts))

    def _put(self, key: str, item: ExportFile) -> None:
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=item.body,
            ContentType=item.content_type,
            CacheControl=item.cache_control,
        )

    def remove(self, page_id: int, slug: str | None, thorough: bool = True) -> None:
        old = self.manifest(page_id)
        if old is None and not thorough:
            return
        for name in {s for s in (slug, old.slug if old else None) if s}:
            self._delete_prefix(self.key(name, ""))
        self.client.delete_object(Bucket=self.bucket, Key=self._manifest_key(page_id))

    def _keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def _delete_prefix(self, prefix: str) -> None:
        keys = self._keys(prefix)
        if keys:
            self._delete(keys)

    def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes 1,000 keys at most
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
