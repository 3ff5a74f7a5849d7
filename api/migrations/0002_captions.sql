-- Captions of images (for image-text ranking models): several per image allowed.
CREATE TABLE captions (
    image_id TEXT NOT NULL REFERENCES images (id),
    caption TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (image_id, caption)
);
