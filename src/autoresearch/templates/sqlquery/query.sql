-- The editable query of the `sqlquery` task. The question (the spec, also in bench.py):
-- for every country, the gold-tier customer who spent the most on shipped orders placed on
-- days 400 to 579 (inclusive), counting only items of the categories 'books' and 'games'.
-- Columns: country, customer_id, name, spend_cents, orders. Ties go to the lower customer_id;
-- countries without such a customer have no row; row order does not matter.
--
-- This baseline is correct and straightforward: total each gold customer's qualifying spend,
-- then keep, per country, the customer that a correlated subquery ranks first. One statement
-- only; it runs on a read-only connection.

WITH spend AS (
    SELECT o.customer_id,
           SUM(i.quantity * i.unit_price_cents) AS spend_cents,
           COUNT(DISTINCT o.id) AS orders
    FROM customers c
    JOIN orders o ON o.customer_id = c.id
    JOIN order_items i ON i.order_id = o.id
    JOIN products p ON p.id = i.product_id
    WHERE c.tier = 'gold'
      AND o.status = 'shipped'
      AND o.day BETWEEN 400 AND 579
      AND p.category IN ('books', 'games')
    GROUP BY o.customer_id
)
SELECT c.country, s.customer_id, c.name, s.spend_cents, s.orders
FROM spend s
JOIN customers c ON c.id = s.customer_id
WHERE s.customer_id = (
    SELECT t.customer_id
    FROM spend t
    JOIN customers d ON d.id = t.customer_id
    WHERE d.country = c.country
    ORDER BY t.spend_cents DESC, t.customer_id
    LIMIT 1
);
