-- Boxes drawn on the images of detection datasets: a label and COCO's bbox (left, top,
-- width, height in the image's pixels), several per image in the order they were drawn. An
-- image's boxes are replaced as a whole (upload, review), in the transaction that writes it.
CREATE TABLE boxes (
    image_id TEXT NOT NULL REFERENCES images (id),
    idx BIGINT NOT NULL,
    label TEXT NOT NULL,
    x DOUBLE PRECISION NOT NULL,
    y DOUBLE PRECISION NOT NULL,
    w DOUBLE PRECISION NOT NULL,
    h DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (image_id, idx)
);
