-- name: up-sell
-- description: Latest purchase in 365 days in a range below its top tier bought: suggest the next tier's product, one per person.
-- schedule: rate(1 day)
-- key: suggested_sku
-- payload: suggested_sku, suggested_product, suggested_tier, because_of_sku, category, product_range
WITH catalogue AS (
    -- The tiered ranges of the catalogue (docs/segments.md, "up-sell"): one row per product,
    -- its range within its category and its tier by price band (within a range, a higher
    -- tier always costs more). The lake has no product table: order lines carry the SKU,
    -- not the range, so the merchandising table lives here. A retailer replaces these rows
    -- with an export of its own catalogue; a SKU absent from them is never up-sold from or to.
    SELECT * FROM (VALUES
        ('SKU-VET-00124', 'T-shirt coton bio blanc', 'vetements', 'basiques', 'entry', 1990),
        ('SKU-VET-00192', 'Marinière rayée bleu/blanc', 'vetements', 'basiques', 'mid', 3990),
        ('SKU-VET-00163', 'Sweat à capuche gris chiné', 'vetements', 'basiques', 'mid', 4490),
        ('SKU-VET-00123', 'Pull col roulé, laine mérinos', 'vetements', 'basiques', 'premium', 6990),
        ('SKU-VET-00157', 'Veste en jean délavé', 'vetements', 'manteaux', 'entry', 7990),
        ('SKU-VET-00218', 'Doudoune légère sans manches', 'vetements', 'manteaux', 'mid', 8990),
        ('SKU-VET-00186', 'Manteau en laine, coupe droite', 'vetements', 'manteaux', 'premium', 14900),
        ('SKU-VET-00205', 'Jupe plissée midi', 'vetements', 'ville', 'entry', 4500),
        ('SKU-VET-00138', 'Chemise en lin, manches longues', 'vetements', 'ville', 'mid', 4990),
        ('SKU-VET-00171', 'Pantalon chino beige', 'vetements', 'ville', 'mid', 4990),
        ('SKU-VET-00142', 'Robe portefeuille fleurie', 'vetements', 'ville', 'mid', 5490),
        ('SKU-VET-00131', 'Jean droit brut', 'vetements', 'ville', 'premium', 5990),
        ('SKU-CHA-00311', 'Baskets en cuir blanc', 'chaussures', 'baskets', 'entry', 8990),
        ('SKU-CHA-00378', 'Chaussures de running, amorti renforcé', 'chaussures', 'baskets', 'premium', 9990),
        ('SKU-CHA-00324', 'Espadrilles en toile', 'chaussures', 'detente', 'entry', 2990),
        ('SKU-CHA-00355', 'Charentaises « tradition »', 'chaussures', 'detente', 'entry', 3490),
        ('SKU-CHA-00342', 'Sandales tressées', 'chaussures', 'detente', 'mid', 4990),
        ('SKU-CHA-00336', 'Mocassins en cuir, semelle gomme', 'chaussures', 'ville', 'entry', 9900),
        ('SKU-CHA-00361', 'Derbies cuir noir', 'chaussures', 'ville', 'mid', 10900),
        ('SKU-CHA-00317', 'Bottines à talon, daim camel', 'chaussures', 'ville', 'premium', 11900),
        ('SKU-ACC-00433', 'Bonnet côtelé', 'accessoires', 'echarpes', 'entry', 1990),
        ('SKU-ACC-00468', 'Foulard en soie imprimé', 'accessoires', 'echarpes', 'mid', 4900),
        ('SKU-ACC-00402', 'Écharpe en cachemire', 'accessoires', 'echarpes', 'premium', 7900),
        ('SKU-ACC-00474', 'Tote bag "Paris je t''aime"', 'accessoires', 'maroquinerie', 'entry', 1500),
        ('SKU-ACC-00415', 'Ceinture cuir, boucle dorée', 'accessoires', 'maroquinerie', 'mid', 3500),
        ('SKU-ACC-00421', 'Sac cabas en toile', 'accessoires', 'maroquinerie', 'mid', 3990),
        ('SKU-ACC-00452', 'Portefeuille en cuir', 'accessoires', 'maroquinerie', 'premium', 4500),
        ('SKU-ACC-00447', 'Lunettes de soleil, monture écaille', 'accessoires', 'montres-lunettes', 'mid', 5900),
        ('SKU-ACC-00489', 'Montre acier, bracelet milanais', 'accessoires', 'montres-lunettes', 'premium', 12900),
        ('SKU-MAI-00522', 'Mug en grès émaillé', 'maison', 'cuisine', 'entry', 1290),
        ('SKU-MAI-00563', 'Torchons en lin (lot de 3)', 'maison', 'cuisine', 'entry', 1990),
        ('SKU-MAI-00584', 'Tablier de cuisine', 'maison', 'cuisine', 'mid', 2200),
        ('SKU-MAI-00503', 'Bougie parfumée figue', 'maison', 'deco', 'entry', 2490),
        ('SKU-MAI-00558', 'Vase en verre soufflé', 'maison', 'deco', 'mid', 3900),
        ('SKU-MAI-00579', 'Diffuseur d''huiles essentielles', 'maison', 'deco', 'premium', 4490),
        ('SKU-MAI-00537', 'Coussin lin lavé', 'maison', 'linge', 'entry', 2990),
        ('SKU-MAI-00516', 'Plaid en laine, 130x170 cm', 'maison', 'linge', 'mid', 6900),
        ('SKU-MAI-00541', 'Parure de lit percale, 240x220', 'maison', 'linge', 'premium', 11900),
        ('SKU-BEA-00634', 'Baume à lèvres', 'beaute', 'maquillage', 'entry', 690),
        ('SKU-BEA-00663', 'Rouge à lèvres mat', 'beaute', 'maquillage', 'mid', 1690),
        ('SKU-BEA-00628', 'Eau de toilette fleur d''oranger', 'beaute', 'maquillage', 'premium', 3900),
        ('SKU-BEA-00605', 'Savon de Marseille à l''huile d''olive', 'beaute', 'soin', 'entry', 490),
        ('SKU-BEA-00641', 'Shampoing solide', 'beaute', 'soin', 'entry', 990),
        ('SKU-BEA-00657', 'Huile sèche corps et cheveux', 'beaute', 'soin', 'mid', 1990),
        ('SKU-BEA-00612', 'Crème hydratante visage, 50 ml', 'beaute', 'soin', 'mid', 2450),
        ('SKU-BEA-00679', 'Coffret soin, édition Noël', 'beaute', 'soin', 'premium', 4900),
        ('SKU-SPO-00725', 'Gourde isotherme 750 ml', 'sport', 'fitness', 'entry', 2490),
        ('SKU-SPO-00733', 'Brassière de sport', 'sport', 'fitness', 'mid', 2990),
        ('SKU-SPO-00769', 'Haltères néoprène (paire)', 'sport', 'fitness', 'mid', 2990),
        ('SKU-SPO-00704', 'Tapis de yoga, 6 mm', 'sport', 'fitness', 'premium', 3490),
        ('SKU-SPO-00718', 'Legging de sport taille haute', 'sport', 'fitness', 'premium', 3990),
        ('SKU-SPO-00771', 'Chaussettes de randonnée', 'sport', 'plein-air', 'entry', 1490),
        ('SKU-SPO-00746', 'Short de running', 'sport', 'plein-air', 'mid', 2490),
        ('SKU-SPO-00752', 'Coupe-vent léger, déperlant', 'sport', 'plein-air', 'premium', 5990),
        ('SKU-ENF-00806', 'Body bébé coton bio, lot de 2', 'enfant', 'bebe', 'entry', 1990),
        ('SKU-ENF-00851', 'Chaussons bébé en cuir', 'enfant', 'bebe', 'entry', 1990),
        ('SKU-ENF-00827', 'Doudou lapin', 'enfant', 'bebe', 'mid', 2490),
        ('SKU-ENF-00813', 'Pyjama enfant étoiles', 'enfant', 'junior', 'entry', 2290),
        ('SKU-ENF-00869', 'Sweat enfant à capuche', 'enfant', 'junior', 'entry', 2790),
        ('SKU-ENF-00848', 'Cartable maternelle', 'enfant', 'junior', 'mid', 3490),
        ('SKU-ENF-00832', 'Ciré enfant jaune', 'enfant', 'junior', 'premium', 3990)
    ) AS t(sku, product, category, product_range, tier, price_minor)
),
tiers AS (
    SELECT * FROM (VALUES ('entry', 1), ('mid', 2), ('premium', 3)) AS t(tier, tier_rank)
),
products AS (
    SELECT c.sku, c.product, c.category, c.product_range, c.tier, t.tier_rank, c.price_minor
    FROM catalogue c
    JOIN tiers t ON t.tier = c.tier
),
-- The catalogue's order lines of each profile (any channel, at any time), with their range.
lines AS (
    SELECT o.profile_id, o.ordered_at, p.sku, p.category, p.product_range, p.tier_rank
    FROM order_lines o
    JOIN products p ON p.sku = o.sku
),
-- Per profile and range, the highest tier ever bought (all history, not only 365 days).
reached AS (
    SELECT profile_id, category, product_range, MAX(tier_rank) AS tier_rank
    FROM lines
    GROUP BY profile_id, category, product_range
),
-- Per range and tier, the next tier above it that the range has.
next_tier AS (
    SELECT lower_tier.category, lower_tier.product_range, lower_tier.tier_rank, MIN(higher.tier_rank) AS next_rank
    FROM (SELECT DISTINCT category, product_range, tier_rank FROM products) lower_tier
    JOIN products higher ON higher.category = lower_tier.category
        AND higher.product_range = lower_tier.product_range AND higher.tier_rank > lower_tier.tier_rank
    GROUP BY lower_tier.category, lower_tier.product_range, lower_tier.tier_rank
),
-- What to suggest above each tier: the cheapest product of the next tier, ties by SKU.
suggestion AS (
    SELECT n.category, n.product_range, n.tier_rank, p.sku, p.product, p.tier,
           ROW_NUMBER() OVER (PARTITION BY n.category, n.product_range, n.tier_rank ORDER BY p.price_minor, p.sku) AS pick
    FROM next_tier n
    JOIN products p ON p.category = n.category AND p.product_range = n.product_range AND p.tier_rank = n.next_rank
),
-- Qualifying lines: within 365 days, in a range whose highest tier ever bought is below its
-- top (the range has a suggestion above it). One suggestion per profile, from the most
-- recent qualifying line (ties: the smallest SKU): a profile enters once, not once per range.
latest AS (
    SELECT l.profile_id, s.sku AS suggested_sku, s.product AS suggested_product, s.tier AS suggested_tier,
           l.sku AS because_of_sku, l.category, l.product_range,
           ROW_NUMBER() OVER (PARTITION BY l.profile_id ORDER BY l.ordered_at DESC, l.sku) AS pick
    FROM lines l
    JOIN reached r ON r.profile_id = l.profile_id AND r.category = l.category AND r.product_range = l.product_range
    JOIN suggestion s ON s.category = r.category AND s.product_range = r.product_range
        AND s.tier_rank = r.tier_rank AND s.pick = 1
    WHERE l.ordered_at > {{run_at}} - INTERVAL '365 days'
)
SELECT profile_id, suggested_sku, suggested_product, suggested_tier, because_of_sku, category, product_range
FROM latest
WHERE pick = 1
